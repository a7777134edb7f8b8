//! The embedded backend of [`Storage`]: SQLite in WAL mode holding events,
//! deliveries (the retry queue), attempts (the history), webhook state and
//! API webhooks.
//!
//! Writes go through one writer thread that groups whatever is queued into a
//! single transaction (group commit): under load many requests share one
//! fsync, and each caller is answered only after its data is committed.
//! Should one write of a group fail, the group reruns with a SAVEPOINT per
//! write, so the failed one leaves nothing and the others still commit.
//! Reads run on a small pool of connections off the async runtime.
//!
//! One process uses the file: a claim's lease is the dispatcher's
//! in-memory reservation (`Busy`), `renew` and `on_new_work` do nothing.
//!
//! Owns: the SQLite file, its schema and all SQL. Opens no sockets.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

mod incidents;
mod windows;

use rusqlite::{Connection, OptionalExtension, Row, params};
use tokio::sync::{mpsc, oneshot};
use windows::Writer;

use crate::event::{Event, now_ms, rfc3339_ms};

use super::{
    Accepted, Activity, Attempt, AttemptError, AttemptRecord, BreakerChange, Busy, Claimed,
    DecisionCursor, DecisionPage, DecisionQuery, DecisionRecord, DedupKey, Delivery, DigestMember,
    DueDelivery, DueDigests, Held, HistoryQuery, ListedDecision, MemberCursor, NewEvent,
    PRUNE_BATCH, Page, QueueDepth, RoutingRecord, SealedDigest, Start, Status, Storage, StoreError,
    StoredWebhook, Target, WebhookState, catch_all_decision, deduped_decision, digested_decision,
    is_recorded, merge_page, with_memberships,
};
use super::{DueSteps, Incident, IncidentChange, IncidentDetail, IncidentEvent, LinkAck, StepRun};

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// How durable a write is when its caller is answered. Every write is one
/// transaction of the one writer connection (`synchronous=NORMAL`, WAL):
/// its COMMIT hands the WAL frames to the OS, which keeps them across a
/// crash of the process (kill -9); the [`Syncer`] thread then flushes the
/// WAL to the disk (`fdatasync`), which keeps them across a power loss.
/// A flush covers every commit made before it began, and recovery after
/// a power loss keeps a prefix of the commits (the WAL's checksummed
/// frames are read in order): a power loss undoes only commits whose
/// flush had not ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Answered after the flush that covers it: on disk (the 202 of
    /// ingest, operators' changes).
    Synced,
    /// Answered at COMMIT, flushed by the next sync without waiting for it:
    /// survives kill -9; a power loss may undo it. Only for writes whose
    /// loss at-least-once already allows (an attempt's record: the delivery
    /// stays due and is sent again).
    Committed,
}

/// One caller's write, queued for the writer thread.
trait WriteJob: Send {
    /// Runs the write in the open transaction; false when it failed. It may
    /// run twice: see [`writer_loop`].
    fn run(&mut self, conn: &Writer) -> bool;
    /// When the caller may be answered.
    fn durability(&self) -> Durability;
    /// Answers the caller once the group's COMMIT (or ROLLBACK) is done,
    /// and for a [`Durability::Synced`] write its flush.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

/// A write, the data it reads (handed back to the caller afterwards) and
/// where its answer goes.
struct Job<F, D, T> {
    write: F,
    data: D,
    durability: Durability,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<(T, D), StoreError>>,
}

impl<F, D, T> WriteJob for Job<F, D, T>
where
    F: Fn(&Writer, &D) -> Result<T, StoreError> + Send,
    D: Send,
    T: Send,
{
    fn run(&mut self, conn: &Writer) -> bool {
        let result = (self.write)(conn, &self.data);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn durability(&self) -> Durability {
        self.durability
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let Job {
            data,
            result,
            reply,
            ..
        } = *self;
        let result =
            result.unwrap_or_else(|| Err(StoreError::Database("the write did not run".into())));
        let _ = reply.send(commit.and(result).map(|t| (t, data)));
    }
}

/// Largest number of writes grouped into one transaction.
const MAX_GROUP: usize = 2048;

#[derive(Clone)]
pub struct SqliteStore {
    writer: mpsc::Sender<Box<dyn WriteJob>>,
    readers: Arc<ReadPool>,
}

/// Reads at once (and pooled read connections): each one is a blocking
/// thread with its own SQLite page cache, so an unbounded number (a drain
/// of a large backlog re-reads a row per attempt) costs hundreds of MiB.
const MAX_READERS: usize = 8;

struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<tokio::sync::Semaphore>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    body        TEXT NOT NULL,          -- the normalized event as JSON
    deliveries  INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    members_at  INTEGER                 -- a digest: where its members go back into `body`
);
CREATE TABLE IF NOT EXISTS deliveries (
    id          TEXT PRIMARY KEY,
    event_id    TEXT NOT NULL,
    webhook_id  TEXT NOT NULL,
    status      TEXT NOT NULL,          -- pending | retrying | succeeded | failed | skipped
    attempts    INTEGER NOT NULL DEFAULT 0,
    due_at      INTEGER,                -- ms; NULL once final
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;                        -- small rows found by id: one B-tree, not two
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (webhook_id, due_at) WHERE due_at IS NOT NULL;
-- Retention (`prune`) walks the events and the attempts in the order they
-- were written (rowid, seq) and finds an old event's deliveries through
-- this index: small batches, never a scan of a table, and no index kept
-- for retention alone (an index on a time column costs the writer a B-tree
-- insert per row; the three that were here, ~6 µs of its CPU per write).
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries (event_id);
CREATE TABLE IF NOT EXISTS attempts (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL,          -- a UUIDv7; never looked up alone
    delivery_id   TEXT NOT NULL,
    webhook_id    TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    status        TEXT NOT NULL,
    status_code   INTEGER,
    success       INTEGER NOT NULL,
    error_kind    TEXT,
    error_origin  TEXT,
    error_message TEXT,
    retryable     INTEGER,
    response_body TEXT,
    duration_ms   INTEGER NOT NULL,
    warnings      TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_webhook ON attempts (webhook_id, seq);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id);
CREATE TABLE IF NOT EXISTS webhook_state (
    webhook_id    TEXT PRIMARY KEY,
    is_active     INTEGER NOT NULL,
    failure_count INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS config_webhooks (
    webhook_id  TEXT PRIMARY KEY,       -- a webhook of relay.yaml
    first_seen  INTEGER NOT NULL        -- ms; its created_at
);
CREATE TABLE IF NOT EXISTS destination_state (
    webhook_id    TEXT NOT NULL,
    incident_key  TEXT NOT NULL,        -- DESIGN §19
    state         TEXT NOT NULL,        -- what a stateful destination kept (≤ 4 KiB)
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (webhook_id, incident_key)
);
-- Routing decisions (DESIGN §17), written in the accept transaction:
-- per event and webhook (webhook_id NULL: about the whole event).
CREATE TABLE IF NOT EXISTS decisions (
    seq          INTEGER PRIMARY KEY,
    event_id     TEXT NOT NULL,
    webhook_id   TEXT,
    webhook_name TEXT,
    decision     TEXT NOT NULL,
    rule         TEXT,
    ref          TEXT,
    created_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_event ON decisions (event_id);
CREATE INDEX IF NOT EXISTS decisions_listing ON decisions (decision, created_at, seq);
CREATE TABLE IF NOT EXISTS api_webhooks (
    id          TEXT PRIMARY KEY,
    spec        TEXT NOT NULL,          -- the spec as JSON, secret left out
    secret      TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
"#;

/// Routing (DESIGN §17): digest windows and their members, dedup windows
/// and the repeats they absorbed.
const ROUTING_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS digests (
    id          TEXT PRIMARY KEY,       -- also the id of the digest event it becomes
    webhook_id  TEXT NOT NULL,
    grp         TEXT NOT NULL,          -- the group's values as JSON
    state       TEXT NOT NULL,          -- open | closing | closed
    count       INTEGER NOT NULL,
    max_events  INTEGER NOT NULL,
    opened_at   INTEGER NOT NULL,
    closes_at   INTEGER NOT NULL,
    webhook_name TEXT,                  -- when it opened: its members' `digested` decisions show it
    first_member INTEGER                -- the rowid of its first row in digest_members
);
-- At most one open window per webhook and group: members join it by upsert.
CREATE UNIQUE INDEX IF NOT EXISTS digests_open ON digests (webhook_id, grp) WHERE state = 'open';
CREATE INDEX IF NOT EXISTS digests_pending ON digests (state, closes_at) WHERE state != 'closed';
-- Appended in arrival order (rowid), whatever window a member joins: a
-- table keyed by window would take every insert at one place per open
-- window, and each group commit would write each of those pages to the WAL
-- (the writer's cost per member grew with the windows open). A window's
-- members are read from its `first_member` on, `count` of them.
CREATE TABLE IF NOT EXISTS digest_members (
    digest_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,       -- 1-based arrival order in the window
    event_id    TEXT NOT NULL,
    created_at  INTEGER NOT NULL DEFAULT 0 -- ms; a member is its event's `digested` decision
);
CREATE INDEX IF NOT EXISTS digest_members_event ON digest_members (event_id);
CREATE TABLE IF NOT EXISTS dedup (
    key         TEXT PRIMARY KEY,       -- the rendered routing.dedup key
    event_id    TEXT NOT NULL,          -- the first event of the open window
    expires_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deduped (
    event_id    TEXT PRIMARY KEY,       -- a repeat ...
    into_id     TEXT NOT NULL           -- ... of this first event
);
CREATE INDEX IF NOT EXISTS deduped_into ON deduped (into_id);
"#;

/// The writer connection's page cache, KiB.
const WRITER_CACHE_KIB: u32 = 16 * 1024;

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before any caller is answered.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Columns added after a table was first shipped.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let has_members_at = conn
        .prepare("SELECT 1 FROM pragma_table_info('events') WHERE name = 'members_at'")?
        .exists([])?;
    if !has_members_at {
        // NULL: the body is whole (every digest stored before is).
        conn.execute_batch("ALTER TABLE events ADD COLUMN members_at INTEGER")?;
    }
    let has_activity = conn
        .prepare("SELECT 1 FROM pragma_table_info('webhook_state') WHERE name = 'activity'")?
        .exists([])?;
    if !has_activity {
        // NULL: a state stored before the breaker could pause; read by
        // `load_webhook_states` from `is_active`.
        conn.execute_batch("ALTER TABLE webhook_state ADD COLUMN activity TEXT")?;
    }
    let has_member_time = conn
        .prepare("SELECT 1 FROM pragma_table_info('digest_members') WHERE name = 'created_at'")?
        .exists([])?;
    if !has_member_time {
        // A `digested` decision became its digest membership (issue 15):
        // the rows written before move onto the memberships, once.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE digest_members ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE digests ADD COLUMN webhook_name TEXT;
             UPDATE digest_members AS m SET created_at = d.created_at FROM decisions AS d
                 WHERE d.decision = 'digested' AND d.event_id = m.event_id AND d.ref = m.digest_id;
             UPDATE digests AS g SET webhook_name = d.webhook_name FROM decisions AS d
                 WHERE d.decision = 'digested' AND d.ref = g.id;
             DELETE FROM decisions WHERE decision = 'digested';
             COMMIT;",
        )?;
    }
    let has_first_member = conn
        .prepare("SELECT 1 FROM pragma_table_info('digests') WHERE name = 'first_member'")?
        .exists([])?;
    if !has_first_member {
        // Members were kept keyed by (window, place) (issue 15): they move,
        // window by window in order, into the appended table, and each
        // window learns where its members start.
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(
            "ALTER TABLE digests ADD COLUMN first_member INTEGER;
             DROP INDEX IF EXISTS digest_members_event;
             DROP INDEX IF EXISTS digest_members_listing;
             ALTER TABLE digest_members RENAME TO digest_members_keyed;",
        )?;
        tx.execute_batch(ROUTING_SCHEMA)?;
        tx.execute_batch(
            "INSERT INTO digest_members (digest_id, seq, event_id, created_at)
                 SELECT digest_id, seq, event_id, created_at FROM digest_members_keyed
                 ORDER BY digest_id, seq;
             DROP TABLE digest_members_keyed;
             UPDATE digests AS g SET first_member = f.first
                 FROM (SELECT digest_id, MIN(rowid) AS first FROM digest_members GROUP BY digest_id) AS f
                 WHERE f.digest_id = g.id;",
        )?;
        tx.commit()?;
    }
    // The listing of `digested` decisions, newest first (its entries hold
    // the key: time, digest, place).
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS digest_members_listing ON digest_members (created_at);",
    )?;
    // Retention's time indexes, replaced by walking rows in write order.
    conn.execute_batch(
        "DROP INDEX IF EXISTS events_received; DROP INDEX IF EXISTS deliveries_final;
         DROP INDEX IF EXISTS attempts_created; DROP INDEX IF EXISTS decisions_created;",
    )?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database and starts the writer thread.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, None)
    }

    /// [`SqliteStore::open`] with `flush` in place of the WAL file's
    /// `fdatasync` (tests: a flush held back or failing).
    fn open_with(path: &Path, flush: Option<Flush>) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Database(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let conn = open(path)?;
        // The writer's page cache (SQLite's default is 2 MiB): the b-tree
        // pages every insert walks stay in memory instead of being read back
        // with a system call.
        conn.pragma_update(None, "cache_size", -(WRITER_CACHE_KIB as i64))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(ROUTING_SCHEMA)?;
        conn.execute_batch(incidents::SCHEMA)?;
        migrate(&conn)?;
        let syncer = Syncer::start(&conn, flush)?;
        let (tx, rx) = mpsc::channel::<Box<dyn WriteJob>>(8192);
        std::thread::Builder::new()
            .name("relay-store-writer".into())
            .spawn(move || writer_loop(Writer::new(conn), rx, syncer))
            .map_err(|e| StoreError::Database(format!("cannot start writer thread: {e}")))?;
        Ok(SqliteStore {
            writer: tx,
            readers: Arc::new(ReadPool {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
            }),
        })
    }

    /// Runs raw SQL in the next group transaction (tests elsewhere in the
    /// crate: a trigger that makes writes fail, rows made old).
    #[doc(hidden)]
    pub async fn execute_for_tests(&self, sql: &str) -> Result<(), StoreError> {
        let sql = sql.to_owned();
        self.write(move |c| Ok(c.execute_batch(&sql)?)).await
    }

    /// Runs `f` inside the next group transaction; resolves after COMMIT.
    ///
    /// `f` may run twice (the first run rolled back, see [`writer_loop`]),
    /// so it must only touch the database.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Writer) -> Result<T, StoreError> + Send + 'static,
    {
        let (t, ()) = self.write_with((), move |c, ()| f(c)).await?;
        Ok(t)
    }

    /// [`SqliteStore::write`] for a write that reads owned `data`: `data` goes to
    /// the writer thread and comes back with the result, without a copy.
    /// Answered once on disk ([`Durability::Synced`]).
    async fn write_with<D, T, F>(&self, data: D, f: F) -> Result<(T, D), StoreError>
    where
        D: Send + 'static,
        T: Send + 'static,
        F: Fn(&Writer, &D) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(Durability::Synced, data, f).await
    }

    /// [`SqliteStore::write_with`] answered at COMMIT
    /// ([`Durability::Committed`]): only for writes a power loss may undo.
    async fn write_committed<D, T, F>(&self, data: D, f: F) -> Result<(T, D), StoreError>
    where
        D: Send + 'static,
        T: Send + 'static,
        F: Fn(&Writer, &D) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(Durability::Committed, data, f).await
    }

    async fn submit<D, T, F>(
        &self,
        durability: Durability,
        data: D,
        f: F,
    ) -> Result<(T, D), StoreError>
    where
        D: Send + 'static,
        T: Send + 'static,
        F: Fn(&Writer, &D) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(Job {
            write: f,
            data,
            durability,
            result: None,
            reply,
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a read on a pooled connection off the async runtime.
    ///
    /// The permit goes into the blocking task and is released when the read
    /// ends, not when the caller stops waiting: a cancelled request cannot
    /// free a slot while its query still runs, so at most [`MAX_READERS`]
    /// reads run at once whatever callers give up.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .readers
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = match pool.idle.lock().map(|mut v| v.pop()) {
                Ok(Some(c)) => c,
                _ => open(&pool.path)?,
            };
            let r = f(&conn);
            if let Ok(mut idle) = pool.idle.lock()
                && idle.len() < MAX_READERS
            {
                idle.push(conn);
            }
            r
        })
        .await
        .map_err(|e| StoreError::Database(format!("read task failed: {e}")))?
    }
}

/// Runs one parameterless statement, prepared once per connection (the
/// writer runs SAVEPOINT/RELEASE/BEGIN/COMMIT thousands of times a second).
fn run_sql(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Group commit: every write waiting when the thread comes round shares one
/// transaction (and one fsync).
///
/// The writes run back to back, with no savepoint between them: a
/// savepoint per write is two more statements, and every page the write
/// touches is copied to the statement journal (~8 % of the writer's CPU per
/// write, `cargo bench --bench store`). Should one fail, the whole
/// transaction is rolled back and the group runs again with a savepoint per
/// write, so the failed one leaves nothing behind and the others still
/// commit.
///
/// The writer never waits for the disk: a committed group's
/// [`Durability::Synced`] writes go to the [`Syncer`], which answers them
/// after its next flush, while the writer runs the next group. Once a
/// flush has failed, every write fails (see [`Syncer`]).
fn writer_loop(conn: Writer, mut rx: mpsc::Receiver<Box<dyn WriteJob>>, syncer: Syncer) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let committed = match syncer.failed() {
            Some(e) => Err(e),
            None => run_group(&conn, &mut batch),
        };
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
            conn.forget_windows();
            for job in batch {
                job.finish(committed.clone());
            }
            continue;
        }
        let (now, later): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|job| job.durability() == Durability::Committed);
        for job in now {
            job.finish(Ok(()));
        }
        // Sent even when empty: the answered writes are flushed too.
        syncer.flush_after(later);
    }
}

/// Flushes the WAL to the disk off the writer thread (`fdatasync` of the
/// `-wal` file, which holds every commit: the writer connection runs at
/// `synchronous=NORMAL`, so COMMIT writes the frames without waiting for
/// the disk). A flush covers every group committed before it began (the
/// kernel syncs all of the file's data written by then) and answers the
/// [`Durability::Synced`] writes among them.
///
/// [`FLUSHERS`] threads flush: a group committed while a flush runs starts
/// the next one on an idle thread at once instead of waiting for it, so a
/// write waits for about one flush, not one and a half, and the disk's
/// latency bounds neither the writer nor the groups' size (on this kind
/// of virtual disk, overlapping `fdatasync` calls complete at ~10 times
/// the rate of calls made one after another). Whichever flush ends first
/// answers everything it covers: flushes may end out of order.
///
/// A failed flush leaves the WAL's unflushed frames in an unknown state
/// (the kernel may have dropped them), and a later successful flush would
/// not make them durable; so after one failure the writes that waited for
/// it and every later write fail (the relay must be restarted, and
/// recovery reads what the disk holds), rather than answer a write whose
/// predecessors may be gone.
struct Syncer {
    /// `None`: no WAL file to flush (the connection then runs at
    /// `synchronous=FULL` and every write is on disk at COMMIT).
    shared: Option<Arc<Flushing>>,
}

/// Threads flushing the WAL at once (see [`Syncer`]).
const FLUSHERS: usize = 4;

/// Makes every commit so far durable: `fdatasync` of the WAL file.
type Flush = Box<dyn Fn() -> std::io::Result<()> + Send + Sync>;

/// What the flushing threads share with the writer.
struct Flushing {
    state: Mutex<Flushes>,
    /// Signalled when a group is committed or the writer stops.
    work: std::sync::Condvar,
    flush: Flush,
    /// Why writes fail for good, once a flush failed.
    failed: std::sync::OnceLock<String>,
}

#[derive(Default)]
struct Flushes {
    /// Groups committed so far (numbered from 1).
    committed: u64,
    /// The last group a flush (running or ended) covers.
    covered: u64,
    /// Synced writes waiting, by group.
    waiting: std::collections::VecDeque<(u64, Vec<Box<dyn WriteJob>>)>,
    /// The writer has stopped.
    closed: bool,
}

impl Syncer {
    /// Switches `conn` to `synchronous=NORMAL` and starts the flushing
    /// threads on its WAL file (or on `flush`, for tests); when that file
    /// cannot be opened, keeps the connection at FULL and flushes nothing
    /// itself.
    fn start(conn: &Connection, flush: Option<Flush>) -> Result<Syncer, StoreError> {
        let flush = match flush {
            Some(f) => f,
            None => {
                let wal = conn
                    .path()
                    .filter(|p| !p.is_empty())
                    .map(|p| PathBuf::from(format!("{p}-wal")));
                let Some(Ok(file)) = wal.as_ref().map(std::fs::File::open) else {
                    return Ok(Syncer { shared: None });
                };
                // The WAL file's directory entry, once: a flush syncs the
                // file's data, not the name that finds it after a power loss.
                if let Some(dir) = wal.as_deref().and_then(Path::parent) {
                    std::fs::File::open(dir)
                        .and_then(|d| d.sync_all())
                        .map_err(|e| {
                            StoreError::Database(format!("cannot sync {}: {e}", dir.display()))
                        })?;
                }
                Box::new(move || file.sync_data())
            }
        };
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let shared = Arc::new(Flushing {
            state: Mutex::new(Flushes::default()),
            work: std::sync::Condvar::new(),
            flush,
            failed: std::sync::OnceLock::new(),
        });
        for i in 0..FLUSHERS {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("relay-store-sync{i}"))
                .spawn(move || shared.run())
                .map_err(|e| StoreError::Database(format!("cannot start a sync thread: {e}")))?;
        }
        Ok(Syncer {
            shared: Some(shared),
        })
    }

    /// Why writes fail for good, once a flush failed.
    fn failed(&self) -> Option<StoreError> {
        let why = self.shared.as_ref()?.failed.get()?;
        Some(StoreError::Database(why.clone()))
    }

    /// A group was committed: its waiting writes are answered by the first
    /// flush that covers it (one starts now if a thread is idle).
    fn flush_after(&self, jobs: Vec<Box<dyn WriteJob>>) {
        let Some(shared) = &self.shared else {
            // At FULL: COMMIT was the flush.
            for job in jobs {
                job.finish(Ok(()));
            }
            return;
        };
        let mut state = lock(&shared.state);
        state.committed += 1;
        let group = state.committed;
        if !jobs.is_empty() {
            state.waiting.push_back((group, jobs));
        }
        drop(state);
        shared.work.notify_one();
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            lock(&shared.state).closed = true;
            shared.work.notify_all();
        }
    }
}

impl Flushing {
    /// One flushing thread: waits for a group no flush covers yet, flushes,
    /// answers what is then on disk. Ends once the writer has stopped and
    /// every group is covered.
    fn run(&self) {
        let mut state = lock(&self.state);
        loop {
            while state.committed == state.covered && !state.closed {
                state = self
                    .work
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if state.committed == state.covered {
                return;
            }
            let upto = state.committed;
            state.covered = upto;
            drop(state);
            let flushed = match self.failed.get() {
                Some(why) => Err(StoreError::Database(why.clone())),
                None => (self.flush)().map_err(|e| {
                    let why = format!(
                        "the disk failed to flush the database's log ({e}); nothing more is written until the relay is restarted"
                    );
                    tracing::error!("{why}");
                    let _ = self.failed.set(why.clone());
                    StoreError::Database(why)
                }),
            };
            state = lock(&self.state);
            let mut done = Vec::new();
            while state.waiting.front().is_some_and(|(g, _)| *g <= upto) {
                done.extend(state.waiting.pop_front().map(|(_, jobs)| jobs));
            }
            drop(state);
            for job in done.into_iter().flatten() {
                job.finish(flushed.clone());
            }
            state = lock(&self.state);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `batch` in one transaction and commits it (see [`writer_loop`]).
fn run_group(conn: &Writer, batch: &mut [Box<dyn WriteJob>]) -> Result<(), StoreError> {
    run_sql(conn, "BEGIN IMMEDIATE")?;
    if batch.iter_mut().all(|job| job.run(conn)) {
        return run_sql(conn, "COMMIT");
    }
    run_sql(conn, "ROLLBACK")?;
    conn.forget_windows();
    run_sql(conn, "BEGIN IMMEDIATE")?;
    for job in batch.iter_mut() {
        run_sql(conn, "SAVEPOINT op")?;
        if !job.run(conn) {
            run_sql(conn, "ROLLBACK TO op")?;
            conn.forget_windows();
        }
        run_sql(conn, "RELEASE op")?;
    }
    run_sql(conn, "COMMIT")
}

// ---------------------------------------------------------------------------
// Events and deliveries

/// Inserts an event and its deliveries; a known id is answered with the
/// first result and creates nothing. `body` is [`event_json`] of `event`.
#[cfg(test)]
fn insert_event(
    conn: &Writer,
    event: &Event,
    body: &str,
    targets: &[Target],
) -> Result<Accepted, StoreError> {
    insert_routed(conn, event, body, targets, None, &[], &[])
}

/// [`insert_event`] for a [`NewEvent`], with its dedup key, digests and
/// routing decisions.
fn insert_new(conn: &Writer, e: &NewEvent) -> Result<Accepted, StoreError> {
    insert_routed(
        conn,
        &e.event,
        &e.body,
        &e.targets,
        e.dedup.as_ref(),
        &e.digests,
        &e.decisions,
    )
}

/// [`insert_event`], taking the dedup key first (a repeat is stored with
/// no delivery and joins no digest) and joining the digests.
fn insert_routed(
    conn: &Writer,
    event: &Event,
    body: &str,
    targets: &[Target],
    dedup_key: Option<&DedupKey>,
    digests: &[DigestMember],
    decisions: &[DecisionRecord],
) -> Result<Accepted, StoreError> {
    let now = now_ms();
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO events (id, type, body, deliveries, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![event.id, event.event_type, body, targets.len() as i64, now])?;
    if inserted == 0 {
        let n: i64 = conn
            .prepare_cached("SELECT deliveries FROM events WHERE id = ?1")?
            .query_row([&event.id], |r| r.get(0))?;
        return Ok(Accepted {
            id: event.id.clone(),
            deliveries: n as u32,
            duplicate: true,
            held: vec![],
            deduped_into: None,
        });
    }
    if let Some(k) = dedup_key {
        let into = dedup(conn, k, &event.id, now)?;
        if into != event.id {
            conn.prepare_cached("UPDATE events SET deliveries = 0 WHERE id = ?1")?
                .execute([&event.id])?;
            // The planned decisions never happened: one for the event.
            insert_decisions(conn, &[deduped_decision(&event.id, &into, now)])?;
            return Ok(Accepted {
                id: event.id.clone(),
                deliveries: 0,
                duplicate: false,
                held: vec![],
                deduped_into: Some(into),
            });
        }
    }
    for m in digests {
        conn.join_digest(m, &event.id, now)?;
    }
    insert_decisions(conn, decisions.iter().filter(|d| is_recorded(d)))?;
    let held = insert_deliveries(conn, &event.id, targets, now)?;
    Ok(Accepted {
        id: event.id.clone(),
        deliveries: targets.len() as u32,
        duplicate: false,
        held,
        deduped_into: None,
    })
}

/// Takes `key` for `event_id` unless another event holds it in an open
/// window; answers the event that holds it (`event_id` itself when this
/// one opened the window) and records a repeat.
fn dedup(conn: &Connection, k: &DedupKey, event_id: &str, now: i64) -> Result<String, StoreError> {
    let into: String = conn
        .prepare_cached(
            "INSERT INTO dedup (key, event_id, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET
                 event_id = CASE WHEN expires_at <= ?4 THEN excluded.event_id ELSE event_id END,
                 expires_at = CASE WHEN expires_at <= ?4 THEN excluded.expires_at ELSE expires_at END
             RETURNING event_id",
        )?
        .query_row(params![k.key, event_id, now + k.window_ms, now], |r| r.get(0))?;
    if into != event_id {
        conn.prepare_cached("INSERT OR IGNORE INTO deduped (event_id, into_id) VALUES (?1, ?2)")?
            .execute(params![event_id, into])?;
    }
    Ok(into)
}

/// Windows to close now and the earliest end of the others.
fn due_digests(conn: &Connection, now: i64) -> Result<DueDigests, StoreError> {
    let mut due: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM digests WHERE state = 'closing' ORDER BY closes_at LIMIT 256",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let late: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM digests WHERE state = 'open' AND closes_at <= ?1 ORDER BY closes_at LIMIT 256",
        )?
        .query_map([now], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    due.extend(late);
    let next_close_ms: Option<i64> = conn
        .prepare_cached(
            "SELECT MIN(closes_at) FROM digests WHERE state = 'open' AND closes_at > ?1",
        )?
        .query_row([now], |r| r.get(0))?;
    Ok(DueDigests { due, next_close_ms })
}

/// The members' stored bodies of a window, in arrival order: the rows
/// from its first member on that belong to it, `count` of them (a window
/// whose start is unknown is read from the table's start).
fn digest_members(conn: &Connection, id: &str) -> Result<Vec<String>, StoreError> {
    let Some((first, count)): Option<(Option<i64>, i64)> = conn
        .prepare_cached("SELECT first_member, count FROM digests WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
    else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT e.body FROM digest_members m JOIN events e ON e.id = m.event_id
         WHERE m.rowid >= ?1 AND m.digest_id = ?2 ORDER BY m.rowid LIMIT ?3",
    )?;
    let members = stmt
        .query_map(params![first.unwrap_or(0), id, count], |r| {
            r.get::<_, String>(0)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(members)
}

/// Catch-all: when no delivery of `event_id` other than the catch-all's is
/// still pending, retrying or succeeded, and the event is in no digest,
/// creates the catch-all delivery (once: its id is fixed per event).
/// Whether it was created.
fn catch_all(conn: &Connection, event_id: &str, t: &Target) -> Result<bool, StoreError> {
    let (status, due) = match t.start {
        Start::Due => ("pending", Some(now_ms())),
        Start::Paused => ("paused", Some(now_ms())),
        Start::Skipped => ("skipped", None),
    };
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO deliveries (id, event_id, webhook_id, status, attempts, due_at, created_at, updated_at)
             SELECT ?1, ?2, ?3, ?4, 0, ?5, ?6, ?6
             WHERE EXISTS (SELECT 1 FROM events WHERE id = ?2)
             AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?2 AND webhook_id != ?3
                             AND status NOT IN ('failed', 'skipped', 'paused'))
             AND NOT EXISTS (SELECT 1 FROM digest_members WHERE event_id = ?2)",
        )?
        .execute(params![t.delivery_id, event_id, t.webhook_id, status, due, now_ms()])?;
    if n > 0 {
        insert_decisions(conn, &[catch_all_decision(event_id, t, now_ms())])?;
    }
    Ok(n > 0)
}

/// Inserts one delivery of `event_id` per target; returns the ones that
/// did not start due (for their history records).
fn insert_deliveries(
    conn: &Connection,
    event_id: &str,
    targets: &[Target],
    now: i64,
) -> Result<Vec<Held>, StoreError> {
    let mut held = Vec::new();
    for t in targets {
        insert_delivery(conn, &t.delivery_id, event_id, &t.webhook_id, t.start, now)?;
        if t.start != Start::Due {
            held.push((t.delivery_id.clone(), t.webhook_id.clone(), t.start));
        }
    }
    Ok(held)
}

/// Inserts one delivery row. A paused one keeps its place in the queue
/// (`due_at`) so that it goes out in order once its webhook is re-enabled;
/// the poller leaves paused webhooks alone.
fn insert_delivery(
    conn: &Connection,
    id: &str,
    event_id: &str,
    webhook_id: &str,
    start: Start,
    now: i64,
) -> Result<(), StoreError> {
    let (status, due): (&str, Option<i64>) = match start {
        Start::Due => ("pending", Some(now)),
        Start::Paused => ("paused", Some(now)),
        Start::Skipped => ("skipped", None),
    };
    conn.prepare_cached(
        "INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, due_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?6)",
    )?
    .execute(params![id, event_id, webhook_id, status, due, now])?;
    Ok(())
}

/// Marks a due delivery as waiting behind its webhook's tripped breaker;
/// its attempt count and place in the queue stay.
fn pause_delivery(conn: &Connection, delivery_id: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE deliveries SET status = 'paused', updated_at = ?2 WHERE id = ?1 AND due_at IS NOT NULL",
    )?
    .execute(params![delivery_id, now_ms()])?;
    Ok(())
}

/// Ids and attempt counts of a webhook's deliveries whose time has come,
/// oldest first (reads the `deliveries_due` index, no event bodies).
fn due_ids(
    conn: &Connection,
    webhook_id: &str,
    now: i64,
    limit: usize,
) -> Result<Vec<(String, u32)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, attempts FROM deliveries
         WHERE webhook_id = ?1 AND due_at IS NOT NULL AND due_at <= ?2
         ORDER BY due_at LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![webhook_id, now, limit as i64], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u32))
    })?;
    rows.map(|r| r.map_err(StoreError::from)).collect()
}

/// The given deliveries with their events (those still due), and the ids
/// of those still due whose event is missing (orphans, see [`fail_orphans`]).
fn load_due(
    conn: &Connection,
    ids: &[(String, u32)],
) -> Result<(Vec<DueDelivery>, Vec<String>), StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.webhook_id, d.attempts, e.body, d.event_id, e.members_at FROM deliveries d
         LEFT JOIN events e ON e.id = d.event_id
         WHERE d.id = ?1 AND d.due_at IS NOT NULL",
    )?;
    let mut out = Vec::with_capacity(ids.len());
    let mut orphans = Vec::new();
    for (id, _) in ids {
        let row = stmt
            .query_row([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })
            .optional()?;
        match row {
            Some((webhook_id, attempts, Some(body), event_id, members_at)) => {
                let event = stored_event(conn, &event_id, body, members_at)?;
                out.push(DueDelivery {
                    delivery_id: id.clone(),
                    webhook_id,
                    attempts: attempts as u32,
                    event,
                });
            }
            Some((_, _, None, _, _)) => orphans.push(id.clone()),
            None => {}
        }
    }
    Ok((out, orphans))
}

/// Ends due deliveries whose event no longer exists as failed.
fn fail_orphans(conn: &Connection, ids: &[String]) -> Result<(), StoreError> {
    let now = now_ms();
    let mut stmt = conn.prepare_cached(
        "UPDATE deliveries SET status = 'failed', due_at = NULL, updated_at = ?2
         WHERE id = ?1 AND due_at IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = deliveries.event_id)",
    )?;
    for id in ids {
        stmt.execute(params![id, now])?;
    }
    Ok(())
}

/// Whether an event is stored.
fn event_exists(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM events WHERE id = ?1")?
        .exists([id])?)
}

/// Whether a delivery is due now with exactly `attempts` attempts made.
fn is_due(
    conn: &Connection,
    delivery_id: &str,
    attempts: u32,
    now: i64,
) -> Result<bool, StoreError> {
    let row: Option<(i64, Option<i64>)> = conn
        .prepare_cached("SELECT attempts, due_at FROM deliveries WHERE id = ?1")?
        .query_row([delivery_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(matches!(row, Some((a, Some(due))) if a == i64::from(attempts) && due <= now))
}

/// Deliveries not final yet, per webhook: `(webhook id, pending, due at
/// `now`)`. Reads only the `deliveries_due` partial index (rows with a
/// `due_at`), so its cost follows the queue, not the history.
fn queue_depth(conn: &Connection, now: i64) -> Result<Vec<QueueDepth>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT webhook_id, COUNT(*), COALESCE(SUM(due_at <= ?1), 0) FROM deliveries
         WHERE due_at IS NOT NULL GROUP BY webhook_id ORDER BY webhook_id",
    )?;
    let rows = stmt.query_map([now], |r| {
        Ok(QueueDepth {
            webhook_id: r.get(0)?,
            pending: r.get::<_, i64>(1)? as u64,
            due: r.get::<_, i64>(2)? as u64,
        })
    })?;
    rows.map(|r| r.map_err(StoreError::from)).collect()
}

/// Moves a delivery to its state after an attempt.
fn update_delivery(
    conn: &Connection,
    delivery_id: &str,
    status: &str,
    attempts: u32,
    due_at: Option<i64>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE deliveries SET status = ?2, attempts = ?3, due_at = ?4, updated_at = ?5 WHERE id = ?1",
    )?
    .execute(params![delivery_id, status, attempts as i64, due_at, now_ms()])?;
    Ok(())
}

fn get_delivery(conn: &Connection, id: &str) -> Result<Option<Delivery>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, event_id, webhook_id, status, attempts FROM deliveries WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(Delivery {
                id: r.get(0)?,
                event_id: r.get(1)?,
                webhook_id: r.get(2)?,
                status: r.get(3)?,
                attempts: r.get::<_, i64>(4)? as u32,
            })
        })
        .optional()?)
}

/// A stored event by id.
fn get_event(conn: &Connection, id: &str) -> Result<Option<Event>, StoreError> {
    let row: Option<(String, Option<i64>)> = conn
        .prepare_cached("SELECT body, members_at FROM events WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(body, members_at)| stored_event(conn, id, body, members_at))
        .transpose()
}

/// An event from its stored row: the body as it is, or, for a digest
/// stored without its members (`members_at`, see
/// [`SqliteStore::finish_digest`]), with their bodies put back in, in
/// order, joined by `,` — the text the digest was built as.
fn stored_event(
    conn: &Connection,
    id: &str,
    mut body: String,
    members_at: Option<i64>,
) -> Result<Event, StoreError> {
    if let Some(at) = members_at {
        let at = usize::try_from(at)
            .ok()
            .filter(|at| body.is_char_boundary(*at))
            .ok_or_else(|| StoreError::Corrupt(format!("digest {id}: members_at {at}")))?;
        let members = digest_members(conn, id)?;
        body.insert_str(at, &members.join(","));
    }
    serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(format!("event {id}: {e}")))
}

// ---------------------------------------------------------------------------
// Webhooks created through the API

fn load_api_webhooks(conn: &Connection) -> Result<Vec<StoredWebhook>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT id, spec, secret, created_at, updated_at FROM api_webhooks")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, spec, secret, created_at_ms, updated_at_ms) = row?;
        let mut spec: crate::config::WebhookSpec = serde_json::from_str(&spec)
            .map_err(|e| StoreError::Corrupt(format!("webhook {id}: {e}")))?;
        spec.secret = secret.map(crate::config::Secret::new);
        out.push(StoredWebhook {
            spec,
            created_at_ms,
            updated_at_ms,
        });
    }
    Ok(out)
}

/// Inserts or replaces an API webhook (its `id` must be set).
fn save_api_webhook(conn: &Connection, w: &StoredWebhook) -> Result<(), StoreError> {
    let id = w
        .spec
        .id
        .as_deref()
        .ok_or_else(|| StoreError::Conflict("a stored webhook needs an id".into()))?;
    let mut spec = w.spec.clone();
    let secret = spec.secret.take();
    let mut value = serde_json::to_value(&spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if let serde_json::Value::Object(m) = &mut value {
        crate::config::reveal_auth_secret(&spec, m);
    }
    let json = value.to_string();
    conn.prepare_cached(
        "INSERT INTO api_webhooks (id, spec, secret, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET spec = ?2, secret = ?3, updated_at = ?5",
    )?
    .execute(params![id, json, secret.as_ref().map(|s| s.expose()), w.created_at_ms, w.updated_at_ms])?;
    Ok(())
}

/// Deletes an API webhook; its pending deliveries end as failed. Returns
/// whether it existed.
fn delete_api_webhook(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached("DELETE FROM api_webhooks WHERE id = ?1")?
        .execute([id])?;
    conn.prepare_cached(
        "UPDATE deliveries SET status = 'failed', due_at = NULL, updated_at = ?2 WHERE webhook_id = ?1 AND due_at IS NOT NULL",
    )?
    .execute(params![id, now_ms()])?;
    conn.prepare_cached("DELETE FROM webhook_state WHERE webhook_id = ?1")?
        .execute([id])?;
    Ok(n > 0)
}

// ---------------------------------------------------------------------------
// Retention

/// How far a retention run has got in the events (by rowid, their order of
/// arrival): events already looked at are not read again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneCursor {
    event: Option<i64>,
}

/// What one retention step deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneStep {
    pub attempts: usize,
    pub decisions: usize,
    pub deliveries: usize,
    pub events: usize,
    /// Routing rows of the deleted events ([`forget_routing`]).
    pub routing: usize,
    /// Nothing older than the cutoff is left to delete.
    pub done: bool,
    /// Where the next step starts.
    pub cursor: PruneCursor,
}

impl PruneStep {
    pub fn rows(&self) -> usize {
        self.attempts + self.decisions + self.deliveries + self.events + self.routing
    }
}

/// One step of retention: deletes at most `limit` rows older than
/// `cutoff_ms` — attempts first, then routing decisions, then, event by
/// event after `cursor`, an old event's final
/// deliveries and the event once none is left and no open digest holds it
/// (with its routing rows: [`forget_routing`]).
///
/// Rows are walked in the order they were written (attempts and decisions
/// by `seq`, events by rowid), which is their order in time, and the walk stops at
/// the first row not older than the cutoff: no index on a time column,
/// and a step costs the rows it reads, at most `limit` of each table plus
/// an event's deliveries (through `deliveries_event`), never a table. A
/// row written out of time order (an attempt recorded a few seconds after
/// a younger one) waits for a later run. Pending work is never deleted.
fn prune(
    conn: &Connection,
    cutoff_ms: i64,
    limit: usize,
    cursor: PruneCursor,
) -> Result<PruneStep, StoreError> {
    let mut step = PruneStep {
        cursor,
        ..PruneStep::default()
    };
    step.attempts = prune_written_before(conn, Log::Attempts, cutoff_ms, limit)?;
    let mut left = limit - step.attempts;
    if left == 0 {
        return Ok(step);
    }
    step.decisions = prune_written_before(conn, Log::Decisions, cutoff_ms, left)?;
    left -= step.decisions;
    if left == 0 {
        return Ok(step);
    }
    let (after, looking) = (cursor.event.unwrap_or(i64::MIN), left);
    let old: Vec<(i64, String, i64)> = conn
        .prepare_cached(
            "SELECT rowid, id, received_at FROM events WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        )?
        .query_map(params![after, left as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut final_ones = conn.prepare_cached(
        "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries
         WHERE event_id = ?1 AND due_at IS NULL AND updated_at < ?2 LIMIT ?3)",
    )?;
    let mut has_delivery =
        conn.prepare_cached("SELECT 1 FROM deliveries WHERE event_id = ?1 LIMIT 1")?;
    // A member stays while its window is not closed (the digest will read
    // its body) and while its digest is stored without the members' text
    // (reading the digest puts it back): it goes in a prune after its
    // digest's.
    let mut in_open_digest = conn.prepare_cached(
        "SELECT 1 FROM digest_members m JOIN digests d ON d.id = m.digest_id
         WHERE m.event_id = ?1
           AND (d.state != 'closed'
                OR EXISTS (SELECT 1 FROM events g WHERE g.id = d.id AND g.members_at IS NOT NULL))
         LIMIT 1",
    )?;
    let mut delete = conn.prepare_cached("DELETE FROM events WHERE rowid = ?1")?;
    let looked_at = old.len();
    for (rowid, id, received_at) in old {
        if received_at >= cutoff_ms {
            step.done = true;
            return Ok(step);
        }
        let n = final_ones.execute(params![id, cutoff_ms, left as i64])?;
        step.deliveries += n;
        left -= n;
        if left == 0 {
            // This event may have more: the next step looks at it again.
            return Ok(step);
        }
        if !has_delivery.exists([&id])? && !in_open_digest.exists([&id])? {
            step.events += delete.execute([rowid])?;
            step.routing += forget_routing(conn, &id)?;
            left -= 1;
        }
        step.cursor.event = Some(rowid);
        if left == 0 {
            return Ok(step);
        }
    }
    step.done = looked_at < looking;
    Ok(step)
}

/// Deletes what routing kept about a deleted event: its repeat mark
/// (`deduped`), its digest memberships, and, when it was a digest, its
/// closed window (a digest event's id is its window's). Answers the rows.
fn forget_routing(conn: &Connection, event_id: &str) -> Result<usize, StoreError> {
    let mut n = 0;
    for sql in [
        "DELETE FROM deduped WHERE event_id = ?1",
        "DELETE FROM digest_members WHERE event_id = ?1",
        "DELETE FROM digests WHERE id = ?1 AND state = 'closed'",
    ] {
        n += conn.prepare_cached(sql)?.execute([event_id])?;
    }
    Ok(n)
}

/// Deletes dedup windows that ended before `cutoff_ms`, at most `limit`
/// (an ended window is taken over by the next event of its key anyway).
/// Reads the whole table (one row per key): run once per retention run,
/// not in every step.
fn prune_dedup(conn: &Connection, cutoff_ms: i64, limit: usize) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM dedup WHERE key IN (SELECT key FROM dedup WHERE expires_at < ?1 LIMIT ?2)",
        )?
        .execute(params![cutoff_ms, limit as i64])?)
}

/// The append-only tables retention walks in write order (`seq`).
#[derive(Clone, Copy)]
enum Log {
    Attempts,
    Decisions,
}

/// Deletes the oldest rows of `log` written before `cutoff_ms`, at most
/// `limit`: the run from the first row (by `seq`) up to the first one not
/// older than the cutoff. Reads at most `limit` rows of the primary key.
fn prune_written_before(
    conn: &Connection,
    log: Log,
    cutoff_ms: i64,
    limit: usize,
) -> Result<usize, StoreError> {
    let (oldest, delete) = match log {
        Log::Attempts => (
            "SELECT seq, created_at FROM attempts ORDER BY seq LIMIT ?1",
            "DELETE FROM attempts WHERE seq <= ?1",
        ),
        Log::Decisions => (
            "SELECT seq, created_at FROM decisions ORDER BY seq LIMIT ?1",
            "DELETE FROM decisions WHERE seq <= ?1",
        ),
    };
    let rows: Vec<(i64, i64)> = conn
        .prepare_cached(oldest)?
        .query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    match rows.iter().take_while(|(_, at)| *at < cutoff_ms).last() {
        Some((last, _)) => Ok(conn.prepare_cached(delete)?.execute([last])?),
        None => Ok(0),
    }
}

// ---------------------------------------------------------------------------
// Webhook state (circuit breaker)

fn load_webhook_states(conn: &Connection) -> Result<Vec<(String, WebhookState)>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT webhook_id, is_active, failure_count, activity FROM webhook_state")?;
    let rows = stmt.query_map([], |r| {
        let is_active = r.get::<_, i64>(1)? != 0;
        let activity = r.get::<_, Option<String>>(3)?;
        Ok((
            r.get::<_, String>(0)?,
            WebhookState {
                // Stored before `activity` existed: an inactive webhook was
                // one the breaker tripped or an operator disabled; pausing
                // keeps its deliveries.
                activity: activity
                    .as_deref()
                    .and_then(Activity::parse)
                    .unwrap_or(if is_active {
                        Activity::Active
                    } else {
                        Activity::Paused
                    }),
                failure_count: r.get::<_, i64>(2)? as u32,
            },
        ))
    })?;
    rows.map(|r| r.map_err(StoreError::from)).collect()
}

fn save_webhook_state(
    conn: &Connection,
    webhook_id: &str,
    s: WebhookState,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO webhook_state (webhook_id, is_active, failure_count, updated_at, activity) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (webhook_id) DO UPDATE SET is_active = ?2, failure_count = ?3, updated_at = ?4, activity = ?5",
    )?
    .execute(params![
        webhook_id,
        s.is_active() as i64,
        s.failure_count as i64,
        now_ms(),
        s.activity.as_str()
    ])?;
    Ok(())
}

/// What a stateful destination kept for (webhook, incident key), if anything.
fn load_destination_state(
    conn: &Connection,
    webhook_id: &str,
    incident_key: &str,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT state FROM destination_state WHERE webhook_id = ?1 AND incident_key = ?2",
        )?
        .query_row(params![webhook_id, incident_key], |r| r.get(0))
        .optional()?)
}

/// Keeps `state` for (webhook, incident key), or forgets it (`None`).
fn save_destination_state(
    conn: &Connection,
    webhook_id: &str,
    incident_key: &str,
    state: Option<&str>,
) -> Result<(), StoreError> {
    match state {
        Some(state) => conn
            .prepare_cached(
                "INSERT INTO destination_state (webhook_id, incident_key, state, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (webhook_id, incident_key) DO UPDATE SET state = ?3, updated_at = ?4",
            )?
            .execute(params![webhook_id, incident_key, state, now_ms()])?,
        None => conn
            .prepare_cached(
                "DELETE FROM destination_state WHERE webhook_id = ?1 AND incident_key = ?2",
            )?
            .execute(params![webhook_id, incident_key])?,
    };
    Ok(())
}

/// First-load times of relay.yaml's webhooks (their `created_at`).
fn load_first_seen(conn: &Connection) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn.prepare("SELECT webhook_id, first_seen FROM config_webhooks")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    rows.map(|r| r.map_err(StoreError::from)).collect()
}

/// Stores what a registry rebuild changed: breaker states set by relay.yaml
/// and first-load times of its new webhooks (a time already stored stays).
fn save_rebuilt(
    conn: &Connection,
    states: &[(String, WebhookState)],
    first_seen: &[(String, i64)],
) -> Result<(), StoreError> {
    for (id, s) in states {
        save_webhook_state(conn, id, *s)?;
    }
    for (id, at) in first_seen {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO config_webhooks (webhook_id, first_seen) VALUES (?1, ?2)",
        )?
        .execute(params![id, at])?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Attempts (the history's rows)

/// Inserts one attempt row.
fn insert_attempt(conn: &Connection, a: &Attempt) -> Result<(), StoreError> {
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

fn list_for_webhook(
    conn: &Connection,
    webhook_id: &str,
    q: &HistoryQuery,
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
fn list_for_delivery(conn: &Connection, delivery_id: &str) -> Result<Vec<Attempt>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM attempts WHERE delivery_id = ?1 ORDER BY seq"
    ))?;
    let rows = stmt.query_map([delivery_id], from_row)?;
    rows.map(|r| r.map(|(_, a)| a).map_err(StoreError::from))
        .collect()
}

// ---------------------------------------------------------------------------
// Circuit breaker counters

/// Applies an attempt's breaker change to the stored counters (a missing
/// row is an active webhook without failures). `None` when nothing was
/// written.
fn apply_breaker(
    conn: &Connection,
    webhook_id: &str,
    change: BreakerChange,
) -> Result<Option<WebhookState>, StoreError> {
    let sql = match change {
        BreakerChange::None | BreakerChange::Success { streak: false } => return Ok(None),
        BreakerChange::Success { streak: true } => {
            "UPDATE webhook_state SET failure_count = 0, updated_at = ?2
             WHERE webhook_id = ?1 RETURNING activity, is_active, failure_count"
        }
        BreakerChange::Failure { .. } | BreakerChange::Trip => {
            "UPDATE webhook_state SET failure_count = failure_count + 1, updated_at = ?2,
                activity = CASE WHEN COALESCE(activity, CASE is_active WHEN 1 THEN 'active' ELSE 'paused' END) = 'active'
                    AND (?3 OR (?4 > 0 AND failure_count + 1 >= ?4)) THEN 'paused'
                    ELSE COALESCE(activity, CASE is_active WHEN 1 THEN 'active' ELSE 'paused' END) END,
                is_active = CASE WHEN is_active = 1 AND (?3 OR (?4 > 0 AND failure_count + 1 >= ?4)) THEN 0 ELSE is_active END
             WHERE webhook_id = ?1 RETURNING activity, is_active, failure_count"
        }
    };
    let (trip, threshold) = match change {
        BreakerChange::Trip => (true, 0i64),
        BreakerChange::Failure { threshold } => (false, i64::from(threshold)),
        _ => (false, 0),
    };
    let now = now_ms();
    if !matches!(change, BreakerChange::Success { .. }) {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO webhook_state (webhook_id, is_active, failure_count, updated_at, activity)
             VALUES (?1, 1, 0, ?2, 'active')",
        )?
        .execute(params![webhook_id, now])?;
    }
    let mut stmt = conn.prepare_cached(sql)?;
    let row = if matches!(change, BreakerChange::Success { .. }) {
        stmt.query_row(params![webhook_id, now], state_from_row)
            .optional()?
    } else {
        stmt.query_row(params![webhook_id, now, trip, threshold], state_from_row)
            .optional()?
    };
    Ok(row)
}

/// A `webhook_state` row from `(activity, is_active, failure_count)`.
fn state_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WebhookState> {
    let activity: Option<String> = r.get(0)?;
    let is_active = r.get::<_, i64>(1)? != 0;
    Ok(WebhookState {
        // Stored before `activity` existed: an inactive webhook was one the
        // breaker tripped or an operator disabled; pausing keeps its
        // deliveries.
        activity: activity
            .as_deref()
            .and_then(Activity::parse)
            .unwrap_or(if is_active {
                Activity::Active
            } else {
                Activity::Paused
            }),
        failure_count: r.get::<_, i64>(2)? as u32,
    })
}

// ---------------------------------------------------------------------------
// Routing decisions

fn insert_decisions<'d>(
    conn: &Connection,
    decisions: impl IntoIterator<Item = &'d DecisionRecord>,
) -> Result<(), StoreError> {
    let mut decisions = decisions.into_iter().peekable();
    if decisions.peek().is_none() {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO decisions (event_id, webhook_id, webhook_name, decision, rule, ref, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for d in decisions {
        stmt.execute(params![
            d.event_id,
            d.webhook_id,
            d.webhook_name,
            d.decision,
            d.rule,
            d.reference,
            d.created_at_ms
        ])?;
    }
    Ok(())
}

fn decision_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<DecisionRecord> {
    Ok(DecisionRecord {
        event_id: r.get(at)?,
        webhook_id: r.get(at + 1)?,
        webhook_name: r.get(at + 2)?,
        decision: r.get(at + 3)?,
        rule: r.get(at + 4)?,
        reference: r.get(at + 5)?,
        created_at_ms: r.get(at + 6)?,
    })
}

fn event_decisions(conn: &Connection, event_id: &str) -> Result<Vec<DecisionRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT event_id, webhook_id, webhook_name, decision, rule, ref, created_at
         FROM decisions WHERE event_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt
        .query_map([event_id], |r| decision_from_row(r, 0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT g.webhook_id, g.webhook_name, m.digest_id, m.created_at
         FROM digest_members m JOIN digests g ON g.id = m.digest_id
         WHERE m.event_id = ?1 ORDER BY m.created_at, g.webhook_id",
    )?;
    let memberships = stmt
        .query_map([event_id], |r| {
            Ok(digested_decision(
                event_id.to_owned(),
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(with_memberships(rows, memberships))
}

/// Decisions, newest first: the rows (`decisions_listing`) and the digest
/// memberships (`digest_members_listing`: the `digested` ones), each read
/// past its own cursor and merged ([`merge_page`]).
fn list_decisions(conn: &Connection, q: &DecisionQuery) -> Result<DecisionPage, StoreError> {
    let limit = q.limit.clamp(1, 1000);
    let from = q.before.clone().unwrap_or_else(DecisionCursor::top);
    let since = q.since_ms.unwrap_or(i64::MIN);
    let digested = q.decision.as_deref().is_none_or(|d| d == "digested");
    let mut rows: Vec<(i64, ListedDecision)> = Vec::new();
    if q.decision.as_deref() != Some("digested") {
        let mut stmt = conn.prepare_cached(
            "SELECT d.seq, d.event_id, d.webhook_id, d.webhook_name, d.decision, d.rule, d.ref, d.created_at, e.type
             FROM decisions d LEFT JOIN events e ON e.id = d.event_id
             WHERE (?1 IS NULL OR d.decision = ?1) AND d.created_at >= ?2
               AND (d.created_at, d.seq) < (?3, ?4)
             ORDER BY d.created_at DESC, d.seq DESC LIMIT ?5",
        )?;
        rows = stmt
            .query_map(
                params![q.decision, since, from.at_ms, from.seq, limit as i64 + 1],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        ListedDecision {
                            record: decision_from_row(r, 1)?,
                            event_type: r.get(8)?,
                        },
                    ))
                },
            )?
            .collect::<Result<_, _>>()?;
    }
    let mut members: Vec<(MemberCursor, ListedDecision)> = Vec::new();
    if digested {
        let m = &from.member;
        let mut stmt = conn.prepare_cached(
            "SELECT m.created_at, m.digest_id, m.seq, m.event_id, g.webhook_id, g.webhook_name, e.type
             FROM digest_members m JOIN digests g ON g.id = m.digest_id
             LEFT JOIN events e ON e.id = m.event_id
             WHERE m.created_at >= ?1 AND (m.created_at, m.digest_id, m.seq) < (?2, ?3, ?4)
             ORDER BY m.created_at DESC, m.digest_id DESC, m.seq DESC LIMIT ?5",
        )?;
        members = stmt
            .query_map(
                params![since, m.at_ms, m.digest_id, m.pos, limit as i64 + 1],
                |r| {
                    let at = MemberCursor {
                        at_ms: r.get(0)?,
                        digest_id: r.get(1)?,
                        pos: r.get(2)?,
                    };
                    let record = digested_decision(
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        at.digest_id.clone(),
                        at.at_ms,
                    );
                    Ok((
                        at,
                        ListedDecision {
                            record,
                            event_type: r.get(6)?,
                        },
                    ))
                },
            )?
            .collect::<Result<_, _>>()?;
    }
    Ok(merge_page(rows, members, limit, from))
}

// ---------------------------------------------------------------------------
// The storage interface

impl Storage for SqliteStore {
    async fn accept(
        &self,
        batch: Vec<NewEvent>,
    ) -> Result<(Vec<Accepted>, Vec<NewEvent>), StoreError> {
        // The batch goes to the writer and comes back with the results.
        self.write_with(batch, |c, batch| {
            let mut out = Vec::with_capacity(batch.len());
            for e in batch {
                let accepted = insert_new(c, e)?;
                if !accepted.duplicate && accepted.deduped_into.is_none() {
                    for a in &e.held {
                        insert_attempt(c, a)?;
                    }
                }
                out.push(accepted);
            }
            Ok(out)
        })
        .await
    }

    async fn add_deliveries(
        &self,
        event_id: &str,
        targets: Vec<Target>,
        held: Vec<Attempt>,
    ) -> Result<bool, StoreError> {
        let data = (event_id.to_owned(), targets, held);
        let (added, _) = self
            .write_with(data, |c, (event_id, targets, held)| {
                // Retention may have pruned the event since it was read:
                // then no delivery may point at it.
                if !event_exists(c, event_id)? {
                    return Ok(false);
                }
                insert_deliveries(c, event_id, targets, now_ms())?;
                for a in held {
                    insert_attempt(c, a)?;
                }
                Ok(true)
            })
            .await?;
        Ok(added)
    }

    async fn resend(&self, delivery_id: &str) -> Result<Option<(Delivery, Event)>, StoreError> {
        let id = delivery_id.to_owned();
        self.write(move |c| {
            let Some(d) = get_delivery(c, &id)? else {
                return Ok(None);
            };
            let Some(event) = get_event(c, &d.event_id)? else {
                return Ok(None);
            };
            update_delivery(c, &id, "pending", d.attempts, Some(now_ms()))?;
            Ok(Some((d, event)))
        })
        .await
    }

    fn on_new_work(&self, _wake: Arc<tokio::sync::Notify>) {
        // One process: ingest offers its own work to dispatch directly.
    }

    async fn claim_due(
        &self,
        webhook_id: &str,
        limit: usize,
        _lease: std::time::Duration,
        busy: Busy,
    ) -> Result<Claimed, StoreError> {
        // Ids first (index only, no event bodies), so the deliveries
        // already held by this process cost nothing to skip.
        let id = webhook_id.to_owned();
        let want = limit + busy.count;
        let candidates = self.read(move |c| due_ids(c, &id, now_ms(), want)).await?;
        let saturated = candidates.len() >= want;
        let fresh: Vec<(String, u32)> = candidates
            .into_iter()
            .filter(|(id, _)| !(busy.contains)(id))
            .take(limit)
            .collect();
        if fresh.is_empty() {
            return Ok(Claimed {
                saturated,
                ..Claimed::default()
            });
        }
        let (due, orphans) = self.read(move |c| load_due(c, &fresh)).await?;
        let count = orphans.len();
        if count > 0 {
            // A power loss may undo it: the next claim ends them again.
            self.write_committed(orphans, |c, orphans| fail_orphans(c, orphans))
                .await?;
        }
        Ok(Claimed {
            due,
            orphans: count,
            saturated,
        })
    }

    async fn renew(
        &self,
        _delivery_ids: Vec<String>,
        _lease: std::time::Duration,
    ) -> Result<(), StoreError> {
        // One process: a lease is the dispatcher's reservation.
        Ok(())
    }

    async fn due_webhooks(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        self.read(move |c| {
            // One probe of the deliveries_due index per webhook that has
            // any (a skip scan), never the whole queue.
            let mut first = c.prepare_cached(
                "SELECT webhook_id FROM deliveries WHERE due_at IS NOT NULL AND webhook_id > ?1
                 ORDER BY webhook_id LIMIT 1",
            )?;
            let mut due = c.prepare_cached(
                "SELECT 1 FROM deliveries WHERE webhook_id = ?1 AND due_at IS NOT NULL AND due_at <= ?2 LIMIT 1",
            )?;
            let mut out = Vec::new();
            let mut after = String::new();
            while let Some(id) = first
                .query_row([&after], |r| r.get::<_, String>(0))
                .optional()?
            {
                if due.exists(params![id, now_ms])? {
                    out.push(id.clone());
                }
                after = id;
            }
            Ok(out)
        })
        .await
    }

    async fn still_due(&self, delivery_id: &str, attempts: u32) -> Result<bool, StoreError> {
        let id = delivery_id.to_owned();
        self.read(move |c| is_due(c, &id, attempts, now_ms())).await
    }

    async fn record_attempt(
        &self,
        record: AttemptRecord,
    ) -> Result<Option<WebhookState>, StoreError> {
        // Answered at COMMIT: a power loss may undo the record, and the
        // delivery, still due, is sent again (at-least-once).
        let (state, _) = self
            .write_committed(record, |c, r| {
                let a = &r.attempt;
                insert_attempt(c, a)?;
                update_delivery(c, &a.delivery_id, a.status.as_str(), a.attempt, r.due_at)?;
                if let Some(d) = &r.destination_state {
                    save_destination_state(c, &a.webhook_id, &d.incident_key, d.state.as_deref())?;
                }
                let state = apply_breaker(c, &a.webhook_id, r.breaker)?;
                if let Some(t) = &r.catch_all
                    && matches!(a.status, Status::Failed | Status::Skipped)
                {
                    catch_all(c, &a.event_id, t)?;
                }
                Ok(state)
            })
            .await?;
        Ok(state)
    }

    async fn record_paused(
        &self,
        attempt: Attempt,
        catch_all_target: Option<Target>,
    ) -> Result<(), StoreError> {
        // A power loss may undo it: the delivery is due again and is
        // paused again by its next offer.
        self.write_committed((attempt, catch_all_target), |c, (a, t)| {
            insert_attempt(c, a)?;
            pause_delivery(c, &a.delivery_id)?;
            if let Some(t) = t {
                catch_all(c, &a.event_id, t)?;
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn due_digests(&self, now_ms: i64) -> Result<DueDigests, StoreError> {
        self.read(move |c| due_digests(c, now_ms)).await
    }

    async fn seal_digest(&self, id: &str) -> Result<Option<SealedDigest>, StoreError> {
        let id = id.to_owned();
        let head = {
            let id = id.clone();
            self.write(move |c| c.seal_digest(&id)).await?
        };
        let Some((webhook_id, group, opened_at_ms)) = head else {
            return Ok(None);
        };
        let members = {
            let id = id.clone();
            self.read(move |c| digest_members(c, &id)).await?
        };
        Ok(Some(SealedDigest {
            id,
            webhook_id,
            group,
            opened_at_ms,
            members,
        }))
    }

    /// The digest's row holds its body without the members' text (which
    /// their own rows hold) and where it goes (`members_at`); reading the
    /// event puts it back ([`stored_event`]). Retention keeps the members'
    /// rows while the digest's is there ([`prune`]). Writing each member's
    /// text a second time, inside its digest, was a fifth of what routing
    /// cost the e2e bench's routing_20 (every event digested, 1,000 per
    /// digest): ~2.5 µs per event, most of it the one writer's.
    async fn finish_digest(
        &self,
        id: &str,
        mut digest: NewEvent,
        members: std::ops::Range<usize>,
    ) -> Result<(Option<Accepted>, NewEvent), StoreError> {
        // (`is_char_boundary` is false past the end.)
        let spliced = !members.is_empty()
            && digest.body.is_char_boundary(members.start)
            && digest.body.is_char_boundary(members.end);
        let whole = spliced.then(|| {
            let mut stored = String::with_capacity(digest.body.len() - members.len());
            stored.push_str(&digest.body[..members.start]);
            stored.push_str(&digest.body[members.end..]);
            std::mem::replace(&mut digest.body, stored)
        });
        let members_at = spliced.then_some(members.start as i64);
        let data = (id.to_owned(), digest);
        let (accepted, (_, mut digest)) = self
            .write_with(data, move |c, (id, e)| {
                let closed = c
                    .prepare_cached(
                        "UPDATE digests SET state = 'closed' WHERE id = ?1 AND state = 'closing'",
                    )?
                    .execute([id])?;
                if closed == 0 {
                    return Ok(None);
                }
                let accepted = insert_new(c, e)?;
                if let Some(at) = members_at.filter(|_| !accepted.duplicate) {
                    c.prepare_cached("UPDATE events SET members_at = ?2 WHERE id = ?1")?
                        .execute(params![e.event.id, at])?;
                }
                for a in &e.held {
                    insert_attempt(c, a)?;
                }
                Ok(Some(accepted))
            })
            .await?;
        if let Some(whole) = whole {
            digest.body = whole;
        }
        Ok((accepted, digest))
    }

    async fn routing_of(&self, event_id: &str) -> Result<RoutingRecord, StoreError> {
        let id = event_id.to_owned();
        self.read(move |c| {
            let deduped_into: Option<String> = c
                .prepare_cached("SELECT into_id FROM deduped WHERE event_id = ?1")?
                .query_row([&id], |r| r.get(0))
                .optional()?;
            let repeats: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM deduped WHERE into_id = ?1")?
                .query_row([&id], |r| r.get(0))?;
            let digests = c
                .prepare_cached(
                    "SELECT d.webhook_id, d.id FROM digest_members m JOIN digests d ON d.id = m.digest_id
                     WHERE m.event_id = ?1 ORDER BY d.webhook_id",
                )?
                .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(RoutingRecord {
                deduped_into,
                repeats: repeats as u64,
                digests,
            })
        })
        .await
    }

    async fn load_api_webhooks(&self) -> Result<Vec<StoredWebhook>, StoreError> {
        self.read(load_api_webhooks).await
    }

    async fn save_api_webhook(&self, webhook: StoredWebhook) -> Result<(), StoreError> {
        self.write_with(webhook, |c, w| save_api_webhook(c, w))
            .await?;
        Ok(())
    }

    async fn delete_api_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |c| delete_api_webhook(c, &id)).await
    }

    async fn load_webhook_states(&self) -> Result<Vec<(String, WebhookState)>, StoreError> {
        self.read(load_webhook_states).await
    }

    async fn save_webhook_state(
        &self,
        webhook_id: &str,
        state: WebhookState,
    ) -> Result<(), StoreError> {
        let id = webhook_id.to_owned();
        self.write(move |c| save_webhook_state(c, &id, state)).await
    }

    async fn load_first_seen(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(load_first_seen).await
    }

    async fn save_rebuilt(
        &self,
        states: Vec<(String, WebhookState)>,
        first_seen: Vec<(String, i64)>,
    ) -> Result<(), StoreError> {
        self.write_with((states, first_seen), |c, (states, first_seen)| {
            save_rebuilt(c, states, first_seen)
        })
        .await?;
        Ok(())
    }

    async fn load_destination_state(
        &self,
        webhook_id: &str,
        incident_key: &str,
    ) -> Result<Option<String>, StoreError> {
        let (w, k) = (webhook_id.to_owned(), incident_key.to_owned());
        self.read(move |c| load_destination_state(c, &w, &k)).await
    }

    async fn get_event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| get_event(c, &id)).await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| get_delivery(c, &id)).await
    }

    async fn list_attempts(
        &self,
        webhook_id: &str,
        query: HistoryQuery,
    ) -> Result<Page, StoreError> {
        let id = webhook_id.to_owned();
        self.read(move |c| list_for_webhook(c, &id, &query)).await
    }

    async fn delivery_attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>, StoreError> {
        let id = delivery_id.to_owned();
        self.read(move |c| list_for_delivery(c, &id)).await
    }

    async fn queue_depth(&self, now_ms: i64) -> Result<Vec<QueueDepth>, StoreError> {
        self.read(move |c| queue_depth(c, now_ms)).await
    }

    /// In steps of at most [`PRUNE_BATCH`] rows, each its own write job:
    /// writes queued meanwhile go in between steps instead of waiting for
    /// the whole run.
    async fn add_decisions(&self, decisions: Vec<DecisionRecord>) -> Result<(), StoreError> {
        self.write_with(decisions, |c, d| insert_decisions(c, d))
            .await
            .map(|_| ())
    }

    async fn event_decisions(&self, event_id: &str) -> Result<Vec<DecisionRecord>, StoreError> {
        let id = event_id.to_owned();
        self.read(move |c| event_decisions(c, &id)).await
    }

    async fn list_decisions(&self, query: DecisionQuery) -> Result<DecisionPage, StoreError> {
        self.read(move |c| list_decisions(c, &query)).await
    }

    async fn prune(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let mut cursor = PruneCursor::default();
        let mut rows = 0;
        loop {
            // A power loss may undo a step: the next run deletes it again.
            let (step, ()) = self
                .write_committed((), move |c, ()| prune(c, cutoff_ms, PRUNE_BATCH, cursor))
                .await?;
            rows += step.rows();
            if step.done {
                break;
            }
            cursor = step.cursor;
        }
        loop {
            let (n, ()) = self
                .write_committed((), move |c, ()| prune_dedup(c, cutoff_ms, PRUNE_BATCH))
                .await?;
            rows += n;
            if n < PRUNE_BATCH {
                return Ok(rows);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::event_json;
    use serde_json::json;

    fn event(id: &str) -> Event {
        Event {
            id: id.into(),
            event_type: "t".into(),
            time: "2026-01-01T00:00:00Z".into(),
            data: json!({"k": "v"}).into(),
        }
    }

    fn target(webhook_id: &str, active: bool) -> Target {
        Target {
            delivery_id: crate::event::new_id(),
            webhook_id: webhook_id.into(),
            start: if active { Start::Due } else { Start::Skipped },
        }
    }

    /// The webhook's deliveries due by now.
    async fn due_now(store: &SqliteStore, webhook: &'static str) -> Vec<(String, u32)> {
        store
            .read(move |c| due_ids(c, webhook, now_ms() + 1, 10))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn destination_state_is_kept_per_webhook_and_incident_key_and_can_be_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        let get =
            |w: &'static str, k: &'static str| store.read(move |c| load_destination_state(c, w, k));
        assert_eq!(get("a", "INC-1").await.unwrap(), None);
        store
            .write(|c| {
                save_destination_state(c, "a", "INC-1", Some(r#"{"ticket":1}"#))?;
                save_destination_state(c, "b", "INC-1", Some(r#"{"ticket":2}"#))?;
                save_destination_state(c, "a", "INC-1", Some(r#"{"ticket":3}"#))
            })
            .await
            .unwrap();
        assert_eq!(
            get("a", "INC-1").await.unwrap().as_deref(),
            Some(r#"{"ticket":3}"#)
        );
        assert_eq!(
            get("b", "INC-1").await.unwrap().as_deref(),
            Some(r#"{"ticket":2}"#)
        );
        assert_eq!(get("a", "INC-2").await.unwrap(), None);
        store
            .write(|c| save_destination_state(c, "a", "INC-1", None))
            .await
            .unwrap();
        assert_eq!(get("a", "INC-1").await.unwrap(), None);
        assert_eq!(
            get("b", "INC-1").await.unwrap().as_deref(),
            Some(r#"{"ticket":2}"#)
        );
    }

    #[tokio::test]
    async fn an_event_is_stored_once_and_its_deliveries_become_due() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        let targets = vec![target("a", true), target("b", false)];
        let (e, t) = (event("e1"), targets.clone());
        let first = store
            .write(move |c| insert_event(c, &e, &event_json(&e).unwrap(), &t))
            .await
            .unwrap();
        assert_eq!(
            (first.deliveries, first.duplicate, first.held.len()),
            (2, false, 1)
        );
        let (e, t) = (event("e1"), targets);
        let again = store
            .write(move |c| insert_event(c, &e, &event_json(&e).unwrap(), &t))
            .await
            .unwrap();
        assert_eq!(
            (again.deliveries, again.duplicate, again.held.len()),
            (2, true, 0)
        );
        let due = store
            .read(|c| {
                let ids = due_ids(c, "a", now_ms() + 1, 10)?;
                Ok(load_due(c, &ids)?.0)
            })
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].event, event("e1"));
        let none = store
            .read(|c| due_ids(c, "b", now_ms() + 1, 10))
            .await
            .unwrap();
        assert!(none.is_empty(), "a skipped delivery is not due");
    }

    #[tokio::test]
    async fn prune_drops_old_history_but_keeps_pending_work() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        let (e1, e2) = (event("done"), event("pending"));
        let (t1, t2) = (vec![target("a", true)], vec![target("a", true)]);
        let did = t1[0].delivery_id.clone();
        store
            .write(move |c| insert_event(c, &e1, &event_json(&e1).unwrap(), &t1))
            .await
            .unwrap();
        store
            .write(move |c| insert_event(c, &e2, &event_json(&e2).unwrap(), &t2))
            .await
            .unwrap();
        store
            .write(move |c| update_delivery(c, &did, "succeeded", 1, None))
            .await
            .unwrap();
        let deleted = store.prune(now_ms() + 1000).await.unwrap();
        assert_eq!(deleted, 2, "the finished delivery and its event");
        assert!(
            store
                .read(|c| get_event(c, "done"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .read(|c| get_event(c, "pending"))
                .await
                .unwrap()
                .is_some()
        );
        let due = due_now(&store, "a").await;
        assert_eq!(due.len(), 1, "pending work survives retention");
    }

    #[tokio::test]
    async fn a_failing_write_leaves_nothing_and_the_rest_of_its_group_commits_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        // Three writes queued together: the middle one fails after writing.
        // The group runs once without savepoints, is rolled back, and runs
        // again with one per write. The event's deliveries are plain
        // INSERTs: had the first run not been rolled back, the second would
        // fail on their primary keys.
        // A slow write holds the writer thread so that the three queue up
        // behind it and form one group.
        let slow = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write(|_| {
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        Ok(())
                    })
                    .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (e, t, counted) = (event("e1"), vec![target("a", true)], runs.clone());
        let before = store.write(move |c| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            insert_event(c, &e, &event_json(&e).unwrap(), &t)
        });
        let bad = store.write(|c| {
            save_webhook_state(
                c,
                "x",
                WebhookState {
                    activity: Activity::Paused,
                    failure_count: 1,
                },
            )?;
            Err::<(), _>(StoreError::Conflict("no".into()))
        });
        let after = store.write(|c| {
            save_webhook_state(
                c,
                "y",
                WebhookState {
                    activity: Activity::Active,
                    failure_count: 2,
                },
            )
        });
        let (before, bad, after) = tokio::join!(before, bad, after);
        slow.await.unwrap().unwrap();
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "the group ran once, was rolled back, and ran again"
        );
        assert_eq!(before.unwrap().deliveries, 1);
        assert!(matches!(bad, Err(StoreError::Conflict(_))), "{bad:?}");
        after.unwrap();
        let states = store.read(load_webhook_states).await.unwrap();
        assert_eq!(
            states,
            vec![(
                "y".to_string(),
                WebhookState {
                    activity: Activity::Active,
                    failure_count: 2
                }
            )]
        );
        let due = due_now(&store, "a").await;
        assert_eq!(due.len(), 1, "{due:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_read_keeps_its_slot_until_the_query_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        // MAX_READERS reads that block until released, each abandoned by
        // its caller (a request cancelled mid-query).
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..MAX_READERS {
            let (gate, started) = (gate.clone(), started.clone());
            let read = store.read(move |_| {
                started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = gate.lock().map(|g| g.recv());
                Ok(())
            });
            let gave_up = tokio::time::timeout(std::time::Duration::from_millis(20), read).await;
            assert!(gave_up.is_err(), "the read was meant to block");
        }
        assert_eq!(
            started.load(std::sync::atomic::Ordering::SeqCst),
            MAX_READERS
        );
        // Every slot is still taken by a running query: another read waits.
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        let next = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .read(move |_| {
                        flag.store(true, std::sync::atomic::Ordering::SeqCst);
                        Ok(())
                    })
                    .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !ran.load(std::sync::atomic::Ordering::SeqCst),
            "a read started while {MAX_READERS} abandoned queries still ran"
        );
        for _ in 0..MAX_READERS {
            release.send(()).unwrap();
        }
        tokio::time::timeout(std::time::Duration::from_secs(10), next)
            .await
            .expect("the waiting read ran once the others ended")
            .unwrap()
            .unwrap();
        assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pruning_a_million_attempts_leaves_the_writer_free_between_batches() {
        const ATTEMPTS: i64 = 1_000_000;
        const FINAL: i64 = 5_000;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        let old = now_ms() - 40 * 86_400_000;
        let setup = std::time::Instant::now();
        store
            .write(move |c| {
                let mut attempt = c.prepare_cached(
                    "INSERT INTO attempts (id, delivery_id, webhook_id, event_id, event_type, attempt,
                     status, success, duration_ms, warnings, created_at)
                     VALUES (?1, ?1, 'a', ?1, 't', 1, 'succeeded', 1, 1, '[]', ?2)",
                )?;
                for i in 0..ATTEMPTS {
                    attempt.execute(params![format!("a{i}"), old + i / 1000])?;
                }
                // Old events with one final delivery each, and one event
                // whose delivery is still pending.
                let mut event = c.prepare_cached(
                    "INSERT INTO events (id, type, body, deliveries, received_at) VALUES (?1, 't', '{}', 1, ?2)",
                )?;
                for i in 0..=FINAL {
                    event.execute(params![format!("e{i}"), old])?;
                    let final_one = i < FINAL;
                    insert_delivery(c, &format!("d{i}"), &format!("e{i}"), "a", Start::Due, old)?;
                    if final_one {
                        c.execute(
                            "UPDATE deliveries SET status = 'succeeded', due_at = NULL WHERE id = ?1",
                            [format!("d{i}")],
                        )?;
                    }
                }
                Ok(())
            })
            .await
            .unwrap();
        eprintln!(
            "setup: {ATTEMPTS} attempts, {FINAL} events in {:?}",
            setup.elapsed()
        );

        // Other writes keep coming while retention runs; each notes how
        // many retention steps had committed when it did.
        let steps_done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = tokio::spawn({
            let (store, steps_done, stop) = (store.clone(), steps_done.clone(), stop.clone());
            async move {
                let mut seen = std::collections::BTreeSet::new();
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    n += 1;
                    let state = WebhookState {
                        activity: Activity::Active,
                        failure_count: n,
                    };
                    store
                        .write(move |c| save_webhook_state(c, "other", state))
                        .await
                        .unwrap();
                    seen.insert(steps_done.load(std::sync::atomic::Ordering::SeqCst));
                }
                seen
            }
        });

        let cutoff = now_ms() - 30 * 86_400_000;
        let mut cursor = PruneCursor::default();
        let (mut steps, mut deleted, mut job_ms) = (Vec::new(), 0usize, Vec::new());
        let run = std::time::Instant::now();
        loop {
            let (step, ms) = store
                .write(move |c| {
                    let t = std::time::Instant::now();
                    let step = prune(c, cutoff, PRUNE_BATCH, cursor)?;
                    Ok((step, t.elapsed().as_secs_f64() * 1e3))
                })
                .await
                .unwrap();
            steps_done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            assert!(step.rows() <= PRUNE_BATCH, "{step:?}");
            deleted += step.rows();
            job_ms.push(ms);
            steps.push(step);
            if step.done {
                break;
            }
            cursor = step.cursor;
        }
        let total = run.elapsed();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let seen = writer.await.unwrap();

        let attempts: usize = steps.iter().map(|s| s.attempts).sum();
        let deliveries: usize = steps.iter().map(|s| s.deliveries).sum();
        let events: usize = steps.iter().map(|s| s.events).sum();
        assert_eq!(
            (attempts, deliveries, events),
            (ATTEMPTS as usize, FINAL as usize, FINAL as usize)
        );
        assert_eq!(deleted, (ATTEMPTS + 2 * FINAL) as usize);
        // 1,000 full steps of attempts, then deliveries and events.
        assert!(steps[..1000].iter().all(|s| s.attempts == PRUNE_BATCH));
        assert_eq!(
            steps.len(),
            (ATTEMPTS + 2 * FINAL) as usize / PRUNE_BATCH + 1
        );
        // The other writes committed between retention steps all along,
        // not only before the first or after the last.
        assert!(
            seen.len() > steps.len() / 4,
            "other writes got through at only {} of {} steps",
            seen.len(),
            steps.len()
        );
        let left: (i64, i64, i64) = store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT (SELECT COUNT(*) FROM attempts), (SELECT COUNT(*) FROM deliveries), (SELECT COUNT(*) FROM events)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(left, (0, 1, 1), "the pending delivery and its event stay");

        let mut slowest: Vec<(f64, PruneStep)> =
            job_ms.iter().copied().zip(steps.iter().copied()).collect();
        slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (ms, s) in &slowest[..3] {
            eprintln!(
                "slow step: {ms:.2} ms ({} attempts, {} deliveries, {} events)",
                s.attempts, s.deliveries, s.events
            );
        }
        job_ms.sort_by(f64::total_cmp);
        let mean = job_ms.iter().sum::<f64>() / job_ms.len() as f64;
        eprintln!(
            "pruned {deleted} rows in {} steps, {total:?}: per step (ms in the writer) median {:.2}, p99 {:.2}, max {:.2}, mean {mean:.2}; other writes at {} steps",
            job_ms.len(),
            job_ms[job_ms.len() / 2],
            job_ms[job_ms.len() * 99 / 100],
            job_ms[job_ms.len() - 1],
            seen.len()
        );
    }

    #[tokio::test]
    async fn write_with_hands_its_data_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        let events = vec![event("e1"), event("e2")];
        let (accepted, events) = store
            .write_with(events, |c, events| {
                events
                    .iter()
                    .map(|e| insert_event(c, e, &event_json(e)?, &[target("a", true)]))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .unwrap();
        assert_eq!(events, vec![event("e1"), event("e2")]);
        let ids: Vec<&str> = accepted.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["e1", "e2"]);
    }

    // -- the storage interface ----------------------------------------------

    fn new_event(id: &str, targets: Vec<Target>) -> NewEvent {
        let e = event(id);
        NewEvent {
            digests: vec![],
            dedup: None,
            body: crate::store::event_json(&e).unwrap(),
            held: targets
                .iter()
                .filter(|t| t.start != Start::Due)
                .map(|t| attempt_of(&t.delivery_id, &t.webhook_id, id, Status::Skipped))
                .collect(),
            targets,
            event: e,
            decisions: vec![],
        }
    }

    fn attempt_of(delivery_id: &str, webhook_id: &str, event_id: &str, status: Status) -> Attempt {
        Attempt {
            id: crate::event::new_id(),
            delivery_id: delivery_id.into(),
            webhook_id: webhook_id.into(),
            event_id: event_id.into(),
            event_type: "t".into(),
            attempt: 1,
            status,
            status_code: None,
            success: status == Status::Succeeded,
            error: None,
            response_body: None,
            duration_ms: 1,
            warnings: vec![],
            created_at: rfc3339_ms(now_ms()),
            created_at_ms: now_ms(),
        }
    }

    async fn count(store: &SqliteStore, sql: &'static str) -> i64 {
        store
            .read(move |c| Ok(c.query_row(sql, [], |r| r.get(0))?))
            .await
            .unwrap()
    }

    /// Event `id`, with no delivery, joining `webhook`'s window of group
    /// `{}` (at most `max_events` members).
    fn joining(id: &str, webhook: &str, max_events: u32) -> NewEvent {
        let e = event(id);
        NewEvent {
            body: event_json(&e).unwrap(),
            event: e,
            targets: vec![],
            held: vec![],
            decisions: vec![],
            digests: vec![DigestMember {
                webhook_id: webhook.into(),
                webhook_name: webhook.to_uppercase(),
                group: "{}".into(),
                window_ms: 60_000,
                max_events,
            }],
            dedup: None,
        }
    }

    /// The ids of a sealed window's members, in their order.
    fn members(sealed: Option<SealedDigest>) -> Vec<String> {
        sealed
            .expect("the window is open or closing")
            .members
            .iter()
            .map(|body| serde_json::from_str::<Event>(body).unwrap().id)
            .collect()
    }

    /// A digest is stored without its members' text (their own rows hold
    /// it) and reads back as it was built, through `get_event` and as a due
    /// delivery; its members' rows stay while it is stored, and go in the
    /// prune after its own.
    #[tokio::test]
    async fn a_digest_stored_without_its_members_reads_back_whole_and_keeps_them_until_it_goes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        for id in ["m1", "m2", "m3"] {
            store.accept(vec![joining(id, "w", 3)]).await.unwrap();
        }
        let window = store.due_digests(now_ms()).await.unwrap().due.remove(0);
        let sealed = store.seal_digest(&window).await.unwrap().expect("sealed");
        // The digest as `route::digest::digest_event` splices it.
        let head = format!(r#"{{"id":"{window}","type":"digest","time":"t","data":{{"alerts":["#);
        let joined = sealed.members.join(",");
        let body = format!(r#"{head}{joined}],"count":3,"group":{{}}}}}}"#);
        let members = head.len()..head.len() + joined.len();
        let delivery = target("w", true);
        let new = NewEvent {
            event: serde_json::from_str(&body).unwrap(),
            body: body.clone(),
            held: vec![],
            targets: vec![delivery.clone()],
            decisions: vec![],
            digests: vec![],
            dedup: None,
        };
        let (accepted, back) = store
            .finish_digest(&window, new, members.clone())
            .await
            .unwrap();
        assert!(accepted.is_some());
        assert_eq!(back.body, body, "the caller gets the whole body back");
        let stored: (i64, Option<i64>) = {
            let id = window.clone();
            store
                .read(move |c| {
                    Ok(c.query_row(
                        "SELECT length(body), members_at FROM events WHERE id = ?1",
                        [&id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?)
                })
                .await
                .unwrap()
        };
        assert_eq!(
            stored,
            (
                (body.len() - members.len()) as i64,
                Some(members.start as i64)
            ),
            "stored without the members' text"
        );
        let got = store.get_event(&window).await.unwrap().expect("the digest");
        assert_eq!(event_json(&got).unwrap(), body);
        let id = delivery.delivery_id.clone();
        let (due, _) = store.read(move |c| load_due(c, &[(id, 0)])).await.unwrap();
        assert_eq!(event_json(&due[0].event).unwrap(), body);

        store
            .execute_for_tests("UPDATE deliveries SET status = 'succeeded', due_at = NULL")
            .await
            .unwrap();
        let members_left = || count(&store, "SELECT COUNT(*) FROM events WHERE id LIKE 'm%'");
        let cutoff = now_ms() + 10_000;
        store.prune(cutoff).await.unwrap();
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM events WHERE id NOT LIKE 'm%'").await,
            0,
            "the digest went"
        );
        assert_eq!(
            members_left().await,
            3,
            "its members stayed while it was stored"
        );
        store.prune(cutoff).await.unwrap();
        assert_eq!(members_left().await, 0, "and go in the next prune");
    }

    /// A window counts exactly the members that were committed: a join
    /// undone by a rolled-back write is not counted (the writer forgets
    /// what it remembered of the window), and after a restart the count is
    /// read back from the members, so the window stops at `max_events`
    /// exactly.
    #[tokio::test]
    async fn a_window_counts_only_committed_members_across_a_rollback_and_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let store = SqliteStore::open(&path).unwrap();
        store
            .execute_for_tests(
                "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.id LIKE 'bad%'
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .await
            .unwrap();
        // x1 joins and is undone with bad1, its write's other event.
        let refused = store
            .accept(vec![joining("x1", "w", 3), joining("bad1", "w", 3)])
            .await;
        assert!(refused.is_err(), "the write with bad1 fails");
        for id in ["m1", "m2"] {
            store.accept(vec![joining(id, "w", 3)]).await.unwrap();
        }
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        // The third member fills the window; the fourth opens another.
        for id in ["m3", "m4"] {
            store.accept(vec![joining(id, "w", 3)]).await.unwrap();
        }
        let due = store.due_digests(now_ms()).await.unwrap().due;
        assert_eq!(due.len(), 1, "one window is full: {due:?}");
        assert_eq!(
            count(&store, "SELECT count FROM digests WHERE state = 'closing'").await,
            3
        );
        assert_eq!(
            members(store.seal_digest(&due[0]).await.unwrap()),
            ["m1", "m2", "m3"]
        );
        let open: String = store
            .read(|c| {
                Ok(
                    c.query_row("SELECT id FROM digests WHERE state = 'open'", [], |r| {
                        r.get(0)
                    })?,
                )
            })
            .await
            .unwrap();
        assert_eq!(members(store.seal_digest(&open).await.unwrap()), ["m4"]);
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM digest_members WHERE event_id = 'x1'"
            )
            .await,
            0,
            "the undone join left no member"
        );
    }

    #[tokio::test]
    async fn accepting_a_known_event_id_again_creates_nothing_and_answers_the_first_result() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        let first = vec![
            new_event("e1", vec![target("a", true), target("b", false)]),
            new_event("e2", vec![target("a", true)]),
        ];
        let (accepted, back) = store.accept(first).await.unwrap();
        assert_eq!(back.len(), 2, "the batch comes back");
        let summary: Vec<(&str, u32, bool, usize)> = accepted
            .iter()
            .map(|a| (a.id.as_str(), a.deliveries, a.duplicate, a.held.len()))
            .collect();
        assert_eq!(summary, [("e1", 2, false, 1), ("e2", 1, false, 0)]);
        // The same ids again, with other targets: the first result stands.
        let again = vec![
            new_event("e1", vec![target("c", true)]),
            new_event("e3", vec![target("a", true)]),
        ];
        let (accepted, _) = store.accept(again).await.unwrap();
        let summary: Vec<(&str, u32, bool)> = accepted
            .iter()
            .map(|a| (a.id.as_str(), a.deliveries, a.duplicate))
            .collect();
        assert_eq!(summary, [("e1", 2, true), ("e3", 1, false)]);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM events").await, 3);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM deliveries").await, 4);
        // The skipped target's record was written once, with the event.
        assert_eq!(count(&store, "SELECT COUNT(*) FROM attempts").await, 1);
        assert!(
            store
                .claim_due("c", 10, std::time::Duration::from_secs(1), Busy::none())
                .await
                .unwrap()
                .due
                .is_empty(),
            "the duplicate created no delivery"
        );
    }

    #[tokio::test]
    async fn claim_due_skips_busy_deliveries_reports_saturation_and_ends_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        let targets: Vec<Target> = (0..5).map(|_| target("a", true)).collect();
        let ids: Vec<String> = targets.iter().map(|t| t.delivery_id.clone()).collect();
        store.accept(vec![new_event("e1", targets)]).await.unwrap();
        let lease = std::time::Duration::from_secs(30);
        let busy_ids: std::collections::HashSet<String> = ids[..2].iter().cloned().collect();
        let busy = Busy {
            count: busy_ids.len(),
            contains: Arc::new(move |id: &str| busy_ids.contains(id)),
        };
        let claimed = store.claim_due("a", 2, lease, busy.clone()).await.unwrap();
        let got: Vec<&str> = claimed.due.iter().map(|d| d.delivery_id.as_str()).collect();
        assert_eq!(got.len(), 2);
        assert!(
            got.iter().all(|id| !ids[..2].contains(&id.to_string())),
            "{got:?}"
        );
        assert!(
            claimed.saturated,
            "4 candidates read for 2 + 2 busy: more may wait"
        );
        assert_eq!(claimed.due[0].event, event("e1"));
        let all = store.claim_due("a", 10, lease, busy).await.unwrap();
        assert_eq!((all.due.len(), all.saturated), (3, false));
        // A delivery whose event is gone is ended, not handed out.
        store
            .execute_for_tests("DELETE FROM events WHERE id = 'e1'")
            .await
            .unwrap();
        let orphaned = store.claim_due("a", 10, lease, Busy::none()).await.unwrap();
        assert_eq!((orphaned.due.len(), orphaned.orphans), (0, 5));
        let d = store.get_delivery(&ids[0]).await.unwrap().unwrap();
        assert_eq!(d.status, "failed");
        assert!(!store.still_due(&ids[0], 0).await.unwrap());
    }

    #[tokio::test]
    async fn a_recorded_retry_is_not_due_until_its_time_and_a_paused_delivery_keeps_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        let (t1, t2) = (target("a", true), target("a", true));
        let (d1, d2) = (t1.delivery_id.clone(), t2.delivery_id.clone());
        store
            .accept(vec![new_event("e1", vec![t1, t2])])
            .await
            .unwrap();
        let lease = std::time::Duration::from_secs(30);
        assert!(store.still_due(&d1, 0).await.unwrap());
        store
            .record_attempt(AttemptRecord {
                catch_all: None,
                attempt: attempt_of(&d1, "a", "e1", Status::Retrying),
                due_at: Some(now_ms() + 60_000),
                breaker: BreakerChange::None,
                destination_state: None,
            })
            .await
            .unwrap();
        store
            .record_paused(attempt_of(&d2, "a", "e1", Status::Paused), None)
            .await
            .unwrap();
        store.renew(vec![d1.clone()], lease).await.unwrap();
        assert!(!store.still_due(&d1, 0).await.unwrap(), "one attempt made");
        assert!(!store.still_due(&d1, 1).await.unwrap(), "due in a minute");
        let claimed = store.claim_due("a", 10, lease, Busy::none()).await.unwrap();
        // The paused one keeps its place in the queue (`due_at`) and is
        // left out by dispatch, which skips paused webhooks.
        let got: Vec<&str> = claimed.due.iter().map(|d| d.delivery_id.as_str()).collect();
        assert_eq!(got, [d2.as_str()]);
        let d = store.get_delivery(&d2).await.unwrap().unwrap();
        assert_eq!((d.status.as_str(), d.attempts), ("paused", 0));
        let history = store.delivery_attempts(&d1).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].status, Status::Retrying);
    }

    /// A flush that waits while its gate is shut, and counts the flushes
    /// that ended.
    struct Gate {
        open: Mutex<bool>,
        opened: std::sync::Condvar,
        flushed: std::sync::atomic::AtomicUsize,
    }

    fn gated_store(dir: &Path) -> (SqliteStore, Arc<Gate>) {
        let gate = Arc::new(Gate {
            open: Mutex::new(false),
            opened: std::sync::Condvar::new(),
            flushed: Default::default(),
        });
        let g = gate.clone();
        let flush: Flush = Box::new(move || {
            let mut open = g.open.lock().unwrap();
            while !*open {
                open = g.opened.wait(open).unwrap();
            }
            g.flushed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
        let store = SqliteStore::open_with(&dir.join("r.db"), Some(flush)).unwrap();
        (store, gate)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_accept_is_answered_after_the_flush_and_an_attempt_record_at_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (store, gate) = gated_store(dir.path());
        let t = target("a", true);
        let d = t.delivery_id.clone();
        let accept = tokio::spawn({
            let store = store.clone();
            async move { store.accept(vec![new_event("e1", vec![t])]).await }
        });
        let record = store.record_attempt(AttemptRecord {
            attempt: attempt_of(&d, "a", "e1", Status::Succeeded),
            due_at: None,
            breaker: BreakerChange::None,
            catch_all: None,
            destination_state: None,
        });
        // The record commits (whether its group held the event or not) and
        // is answered with no flush done.
        tokio::time::timeout(std::time::Duration::from_secs(10), record)
            .await
            .expect("a record is answered at its COMMIT")
            .unwrap();
        let mut accept = accept;
        let early = tokio::time::timeout(std::time::Duration::from_millis(300), &mut accept).await;
        assert!(early.is_err(), "the accept was answered before any flush");
        assert_eq!(gate.flushed.load(std::sync::atomic::Ordering::SeqCst), 0);
        // Committed, so readable; not yet answered.
        assert!(store.get_event("e1").await.unwrap().is_some());
        *gate.open.lock().unwrap() = true;
        gate.opened.notify_all();
        let (accepted, _) = tokio::time::timeout(std::time::Duration::from_secs(10), accept)
            .await
            .expect("the accept is answered once flushed")
            .unwrap()
            .unwrap();
        assert_eq!((accepted.len(), accepted[0].duplicate), (1, false));
        assert!(gate.flushed.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    }

    #[tokio::test]
    async fn after_a_failed_flush_every_write_fails_and_reads_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let flush: Flush = Box::new(|| Err(std::io::Error::other("device gone")));
        let store = SqliteStore::open_with(&dir.path().join("r.db"), Some(flush)).unwrap();
        let err = store
            .accept(vec![new_event("e1", vec![target("a", true)])])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("device gone"), "{err}");
        // Later writes fail without running, whatever their durability.
        for _ in 0..2 {
            let err = store
                .record_attempt(AttemptRecord {
                    attempt: attempt_of("d", "a", "e1", Status::Succeeded),
                    due_at: None,
                    breaker: BreakerChange::None,
                    catch_all: None,
                    destination_state: None,
                })
                .await
                .unwrap_err();
            assert!(err.to_string().contains("restarted"), "{err}");
        }
        assert_eq!(count(&store, "SELECT COUNT(*) FROM attempts").await, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn breaker_failures_from_concurrent_attempts_are_all_counted_and_trip_at_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        const N: usize = 25;
        let targets: Vec<Target> = (0..N).map(|_| target("a", true)).collect();
        let ids: Vec<String> = targets.iter().map(|t| t.delivery_id.clone()).collect();
        store.accept(vec![new_event("e1", targets)]).await.unwrap();
        // Every failure is recorded at once from its own task: the stored
        // counter, not a value read before, is what each adds to.
        let tasks: Vec<_> = ids
            .iter()
            .map(|id| {
                let (store, id) = (store.clone(), id.clone());
                tokio::spawn(async move {
                    store
                        .record_attempt(AttemptRecord {
                            catch_all: None,
                            attempt: attempt_of(&id, "a", "e1", Status::Failed),
                            due_at: None,
                            breaker: BreakerChange::Failure { threshold: 10 },
                            destination_state: None,
                        })
                        .await
                        .unwrap()
                        .expect("a failure writes the state")
                })
            })
            .collect();
        let mut counts = Vec::new();
        for t in tasks {
            counts.push(t.await.unwrap());
        }
        let mut seen: Vec<u32> = counts.iter().map(|s| s.failure_count).collect();
        seen.sort();
        assert_eq!(
            seen,
            (1..=N as u32).collect::<Vec<_>>(),
            "each got its own count"
        );
        for s in &counts {
            let want = if s.failure_count >= 10 {
                Activity::Paused
            } else {
                Activity::Active
            };
            assert_eq!(s.activity, want, "{s:?}");
        }
        let states = store.load_webhook_states().await.unwrap();
        assert_eq!(
            states,
            vec![(
                "a".to_string(),
                WebhookState {
                    activity: Activity::Paused,
                    failure_count: N as u32
                }
            )]
        );
    }

    #[tokio::test]
    async fn a_breaker_change_never_overrides_an_operators_disable_and_success_resets_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        let record = |webhook: &str, breaker| AttemptRecord {
            catch_all: None,
            attempt: attempt_of("d", webhook, "e", Status::Failed),
            due_at: None,
            breaker,
            destination_state: None,
        };
        let disabled = WebhookState {
            activity: Activity::Disabled(crate::store::Operator::Api),
            failure_count: 0,
        };
        store.save_webhook_state("off", disabled).await.unwrap();
        let s = store
            .record_attempt(record("off", BreakerChange::Trip))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.activity, Activity::Disabled(crate::store::Operator::Api));
        assert_eq!(s.failure_count, 1);
        let s = store
            .record_attempt(record("on", BreakerChange::Trip))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((s.activity, s.failure_count), (Activity::Paused, 1));
        let s = store
            .record_attempt(record("on", BreakerChange::Success { streak: true }))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((s.activity, s.failure_count), (Activity::Paused, 0));
        // No streak known and none stored: nothing written.
        let none = store
            .record_attempt(record("new", BreakerChange::Success { streak: false }))
            .await
            .unwrap();
        assert_eq!(none, None);
        let threshold_zero = store
            .record_attempt(record("never", BreakerChange::Failure { threshold: 0 }))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(threshold_zero.activity, Activity::Active, "0 = never trips");
    }

    /// A database in a layout of an earlier version: today's schema
    /// created, then taken back by `sql` (run on the connection answered).
    fn older_database(sql: &str) -> (tempfile::TempDir, PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        drop(SqliteStore::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.execute_batch(sql).unwrap();
        (dir, path, c)
    }

    /// A database written before a `digested` decision became its digest
    /// membership: its decision rows move onto the memberships when it is
    /// opened, so the explanation and the listing say what they said.
    #[tokio::test]
    async fn an_older_database_s_digested_decisions_become_its_memberships_once() {
        let (_dir, path, c) = older_database(
            "DROP INDEX digest_members_listing;
                 ALTER TABLE digest_members DROP COLUMN created_at;
                 ALTER TABLE digests DROP COLUMN webhook_name;
                 INSERT INTO events (id, type, body, deliveries, received_at)
                     VALUES ('e1', 't', '{}', 0, 1000), ('e2', 't', '{}', 0, 2000);
                 INSERT INTO digests (id, webhook_id, grp, state, count, max_events, opened_at, closes_at)
                     VALUES ('d1', 'w', '{}', 'open', 2, 100, 1000, 61000);
                 INSERT INTO digest_members (digest_id, seq, event_id) VALUES ('d1', 1, 'e1'), ('d1', 2, 'e2');
                 INSERT INTO decisions (event_id, webhook_id, webhook_name, decision, rule, ref, created_at) VALUES
                     ('e1', 'w', 'Weekly', 'digested', 'digest', 'd1', 1000),
                     ('e1', 'x', 'Other', 'filtered', 'filter.tenant', NULL, 1000),
                     ('e2', 'w', 'Weekly', 'digested', 'digest', 'd1', 2000);",
        );
        drop(c);
        let store = SqliteStore::open(&path).unwrap();
        let rows = count(
            &store,
            "SELECT COUNT(*) FROM decisions WHERE decision = 'digested'",
        )
        .await;
        assert_eq!(rows, 0, "the rows became memberships");
        let e1 = store.event_decisions("e1").await.unwrap();
        let seen: Vec<(&str, Option<&str>, Option<&str>, i64)> = e1
            .iter()
            .map(|d| {
                (
                    d.decision.as_str(),
                    d.webhook_name.as_deref(),
                    d.reference.as_deref(),
                    d.created_at_ms,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("filtered", Some("Other"), None, 1000),
                ("digested", Some("Weekly"), Some("d1"), 1000)
            ]
        );
        let page = store
            .list_decisions(DecisionQuery {
                decision: Some("digested".into()),
                limit: 10,
                ..DecisionQuery::default()
            })
            .await
            .unwrap();
        let listed: Vec<(&str, i64)> = page
            .data
            .iter()
            .map(|d| (d.record.event_id.as_str(), d.record.created_at_ms))
            .collect();
        assert_eq!(listed, [("e2", 2000), ("e1", 1000)]);
        assert!(page.next.is_none());
        // Opening it again changes nothing.
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.event_decisions("e1").await.unwrap(), e1);
    }

    /// A database whose digest members were keyed by (window, place): they
    /// move into the appended table window by window, so two windows open
    /// across the upgrade, and members that join them afterwards in turns,
    /// each read exactly their own members in arrival order.
    #[tokio::test]
    async fn an_older_database_s_members_keyed_by_window_are_appended_and_each_window_reads_its_own()
     {
        let (_dir, path, c) = older_database(
            "DROP TABLE digest_members;
                 ALTER TABLE digests DROP COLUMN first_member;
                 ALTER TABLE events DROP COLUMN members_at;
                 CREATE TABLE digest_members (
                     digest_id TEXT NOT NULL, seq INTEGER NOT NULL, event_id TEXT NOT NULL,
                     created_at INTEGER NOT NULL DEFAULT 0,
                     PRIMARY KEY (digest_id, seq)
                 ) WITHOUT ROWID;
                 CREATE INDEX digest_members_event ON digest_members (event_id);
                 CREATE INDEX digest_members_listing ON digest_members (created_at);
                 INSERT INTO digests (id, webhook_id, grp, state, count, max_events, opened_at, closes_at, webhook_name)
                     VALUES ('d-b', 'wb', '{}', 'open', 2, 100, 1000, 4102444800000, 'B'),
                            ('d-a', 'wa', '{}', 'open', 2, 100, 1000, 4102444800000, 'A');",
        );
        // Arrived a1, b1, a2, b2; stored in key order.
        for (digest, seq, id) in [
            ("d-a", 1, "a1"),
            ("d-b", 1, "b1"),
            ("d-a", 2, "a2"),
            ("d-b", 2, "b2"),
        ] {
            c.execute(
                "INSERT INTO events (id, type, body, deliveries, received_at) VALUES (?1, 't', ?2, 0, 1000)",
                params![id, event_json(&event(id)).unwrap()],
            )
            .unwrap();
            c.execute(
                "INSERT INTO digest_members (digest_id, seq, event_id, created_at) VALUES (?1, ?2, ?3, 1000)",
                params![digest, seq, id],
            )
            .unwrap();
        }
        drop(c);
        let store = SqliteStore::open(&path).unwrap();
        for (id, webhook) in [("b3", "wb"), ("a3", "wa"), ("b4", "wb"), ("a4", "wa")] {
            store.accept(vec![joining(id, webhook, 100)]).await.unwrap();
        }
        let a = members(store.seal_digest("d-a").await.unwrap());
        assert_eq!(a, ["a1", "a2", "a3", "a4"]);
        let b = members(store.seal_digest("d-b").await.unwrap());
        assert_eq!(b, ["b1", "b2", "b3", "b4"]);
        let a1 = store.get_event("a1").await.unwrap();
        assert_eq!(
            a1.map(|e| e.id).as_deref(),
            Some("a1"),
            "events read (members_at added)"
        );
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM digest_members WHERE rowid > 0"
            )
            .await,
            8,
            "the members are in a table with rowids"
        );
        // Opening it again changes nothing.
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(members(store.seal_digest("d-a").await.unwrap()), a);
    }
}
