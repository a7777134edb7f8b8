//! The storage interface: everything the relay keeps durably, as the
//! product's operations (accept an event, claim due work, record an
//! attempt, ...), not as SQL. One trait, [`Storage`], and one
//! implementation per backend, chosen at start from `storage:` in
//! relay.yaml and reached through the enum [`Store`]:
//!
//! - `sqlite.rs` — the embedded default: one file (WAL; commits at
//!   `synchronous=NORMAL`, flushed by threads of their own), one writer
//!   thread with group commit, a pool of read connections. One
//!   process: claims are the dispatcher's in-memory reservations.
//! - `postgres.rs` (issue 19 part 2) — a database shared by several relay
//!   instances: claims are short transactions setting a lease.
//!
//! Durability contract, for every backend: a method that writes resolves
//! only after its transaction is committed (on disk for SQLite, on the
//! server for Postgres) — except the writes whose loss at-least-once
//! allows (`record_attempt`, `record_paused`, the orphans `claim_due`
//! ends, `prune`), which SQLite answers once committed but before they
//! are on disk: a crash keeps them, a power loss may undo the last few
//! ms of them (ARCHITECTURE.md, "Durability"). A method's writes are one
//! transaction unless its documentation says otherwise; an `Err` means
//! nothing of that call was committed, unless the disk failed to flush
//! (SQLite: then every later write fails until a restart). Errors never
//! show a database URL or password.
//!
//! Leases (several instances on one database): a claim is a short
//! transaction that sets `owner` and `locked_until` on the deliveries it
//! returns; no row lock is held while an attempt runs; the lease of a
//! running attempt is renewed ([`Storage::renew`]) well before it ends;
//! recording the attempt releases it; a lease that expired (its instance
//! died or hangs) makes the delivery claimable by any instance again.
//!
//! Owns: the interface, the record types (`types.rs`), the choice of
//! backend. Only `src/store/` talks to a database.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::{StorageBackend, StorageConfig};
use crate::event::Event;

pub mod postgres;
pub mod sqlite;
mod types;

pub use types::*;

/// The storage interface. Every method is one transaction (unless said
/// otherwise) and resolves after its commit; see the module documentation
/// for the durability and lease contract.
pub trait Storage: Send + Sync {
    // -- ingest -------------------------------------------------------------

    /// Stores a batch of events with one delivery per target, and the
    /// history records of targets that did not start due, in ONE
    /// transaction, committed before this resolves (the 202 is sent after).
    /// An event whose id is already stored (idempotency key) creates
    /// nothing and is answered with the first acceptance's id and count
    /// (`duplicate: true`). The batch is handed back for the caller to
    /// pass on to dispatch without a copy. Results are in batch order.
    fn accept(
        &self,
        batch: Vec<NewEvent>,
    ) -> impl Future<Output = Result<(Vec<Accepted>, Vec<NewEvent>), StoreError>> + Send;

    /// Adds deliveries of a stored event (replay) and the history records
    /// of those that did not start due, in one transaction. `false` (and
    /// nothing written) when the event is no longer stored (pruned).
    fn add_deliveries(
        &self,
        event_id: &str,
        targets: Vec<Target>,
        held: Vec<Attempt>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Makes a delivery due now again (manual resend), keeping its attempt
    /// count, and returns it with its event; `None` when the delivery or
    /// its event is gone. One transaction.
    fn resend(
        &self,
        delivery_id: &str,
    ) -> impl Future<Output = Result<Option<(Delivery, Event)>, StoreError>> + Send;

    // -- dispatch -----------------------------------------------------------

    /// Registers a wake-up for work accepted elsewhere (another instance):
    /// the backend calls `wake.notify_one()` when it learns of some. A
    /// single-process backend does nothing (ingest offers its own work
    /// directly); the dispatcher's polling is the fallback either way.
    fn on_new_work(&self, wake: Arc<Notify>);

    /// Claims up to `limit` of a webhook's due deliveries (oldest due
    /// first) for this instance, for `lease`, with their events. Skips
    /// deliveries `busy` names (already queued or running here) and those
    /// leased by any instance whose lease has not expired.
    /// A claim is a short transaction: no lock outlives it. Due deliveries
    /// whose event is gone are ended as failed in the same call (counted in
    /// `orphans`). A paused delivery keeps its due time (its place in the
    /// queue): dispatch does not claim for a paused webhook, and once it is
    /// re-enabled they go out oldest first. SQLite: one process, so
    /// the lease is the caller's in-memory reservation and `lease` is
    /// unused.
    fn claim_due(
        &self,
        webhook_id: &str,
        limit: usize,
        lease: Duration,
        busy: Busy,
    ) -> impl Future<Output = Result<Claimed, StoreError>> + Send;

    /// The webhooks that have a delivery due at `now_ms` (not final, its
    /// time come; paused ones included), each once. The poller asks only
    /// these: its cost follows the queue, not the number of webhooks
    /// (issue 15, MSP scale). A read.
    fn due_webhooks(
        &self,
        now_ms: i64,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Extends the leases this instance holds on `delivery_ids` (attempts
    /// still running) to now + `lease`. Ids not leased by this instance are
    /// left alone. A zero `lease` gives them up: they are claimable by any
    /// instance at once (a delivery that did not fit its lane, or still
    /// queued at a graceful stop), and the other instances are woken. A
    /// no-op on SQLite.
    fn renew(
        &self,
        delivery_ids: Vec<String>,
        lease: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether a delivery is due now with exactly `attempts` attempts made
    /// (an offer can be stale: the row is the truth). A read.
    fn still_due(
        &self,
        delivery_id: &str,
        attempts: u32,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records an attempt: the attempt row, the delivery's new state
    /// (`attempt.status`, `attempt.attempt` attempts, `due_at`) and the
    /// breaker change, in ONE transaction; releases the delivery's lease.
    /// The breaker update is atomic in the database (several instances
    /// may fail the same webhook at once). Returns the webhook's stored
    /// state after the change when the change wrote one.
    fn record_attempt(
        &self,
        record: AttemptRecord,
    ) -> impl Future<Output = Result<Option<WebhookState>, StoreError>> + Send;

    /// Records that a due delivery waits behind its webhook's tripped
    /// breaker: the `paused` attempt row and the delivery marked paused
    /// (attempt count and place in the queue kept), one transaction;
    /// releases its lease. With `catch_all`, the catch-all delivery is
    /// created in the same transaction when no delivery of the event is
    /// left pending, retrying or succeeded (see [`AttemptRecord`]).
    fn record_paused(
        &self,
        attempt: Attempt,
        catch_all: Option<Target>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    // -- routing: digests, dedup (DESIGN §17) -------------------------------

    /// Digest windows to close now (full ones, and open ones whose end has
    /// come at `now_ms`) and the earliest end of the others. A read.
    fn due_digests(
        &self,
        now_ms: i64,
    ) -> impl Future<Output = Result<DueDigests, StoreError>> + Send;

    /// Stops a window taking members and answers it with its members, in
    /// arrival order; `None` when it is closed already (by another
    /// instance) or unknown. Idempotent: a window sealed before a crash is
    /// sealed again.
    fn seal_digest(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<SealedDigest>, StoreError>> + Send;

    /// Closes a sealed window and stores its digest event with its
    /// deliveries, in ONE transaction; `None` (and nothing written) when
    /// another instance closed it first. The event comes back for
    /// dispatch. `members` is the span of `digest.body` that is the
    /// window's members' stored bodies joined by `,` (empty: none marked):
    /// SQLite stores the body without it and splices the members back in
    /// when it reads the event, so their text is not written twice.
    fn finish_digest(
        &self,
        id: &str,
        digest: NewEvent,
        members: std::ops::Range<usize>,
    ) -> impl Future<Output = Result<(Option<Accepted>, NewEvent), StoreError>> + Send;

    /// What routing stored about one event. A read.
    fn routing_of(
        &self,
        event_id: &str,
    ) -> impl Future<Output = Result<RoutingRecord, StoreError>> + Send;

    // -- webhooks -----------------------------------------------------------

    fn load_api_webhooks(
        &self,
    ) -> impl Future<Output = Result<Vec<StoredWebhook>, StoreError>> + Send;

    /// Inserts or replaces an API webhook (its `spec.id` must be set).
    fn save_api_webhook(
        &self,
        webhook: StoredWebhook,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes an API webhook, ends its pending deliveries as failed and
    /// drops its breaker state, in one transaction. Whether it existed.
    fn delete_api_webhook(&self, id: &str)
    -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every stored breaker state.
    fn load_webhook_states(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, WebhookState)>, StoreError>> + Send;

    /// Sets a webhook's breaker state outright (an operator's enable or
    /// disable).
    fn save_webhook_state(
        &self,
        webhook_id: &str,
        state: WebhookState,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// First-load times of relay.yaml's webhooks (their `created_at`).
    fn load_first_seen(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, i64)>, StoreError>> + Send;

    /// Stores what a registry rebuild changed, in one transaction: breaker
    /// states set by relay.yaml and first-load times of new file webhooks
    /// (a time already stored stays).
    fn save_rebuilt(
        &self,
        states: Vec<(String, WebhookState)>,
        first_seen: Vec<(String, i64)>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    // -- history and reads --------------------------------------------------

    fn get_event(&self, id: &str)
    -> impl Future<Output = Result<Option<Event>, StoreError>> + Send;

    /// What a stateful destination kept for (webhook, incident key), if
    /// anything (written by [`Storage::record_attempt`]).
    fn load_destination_state(
        &self,
        webhook_id: &str,
        incident_key: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    fn get_delivery(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Delivery>, StoreError>> + Send;

    /// A webhook's attempts, newest first, filtered and paged.
    fn list_attempts(
        &self,
        webhook_id: &str,
        query: HistoryQuery,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// Every attempt of one delivery, oldest first.
    fn delivery_attempts(
        &self,
        delivery_id: &str,
    ) -> impl Future<Output = Result<Vec<Attempt>, StoreError>> + Send;

    /// Deliveries not final yet, per webhook (ordered by webhook id), and
    /// how many are due at `now_ms`. Its cost follows the queue, not the
    /// history.
    fn queue_depth(
        &self,
        now_ms: i64,
    ) -> impl Future<Output = Result<Vec<QueueDepth>, StoreError>> + Send;

    // -- routing decisions (DESIGN §17) -----------------------------------

    /// Records decisions made after an event's acceptance (dispatch's
    /// `paused`/`skipped`, the catch-all), in one transaction.
    fn add_decisions(
        &self,
        decisions: Vec<DecisionRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every decision about one event, oldest first.
    fn event_decisions(
        &self,
        event_id: &str,
    ) -> impl Future<Output = Result<Vec<DecisionRecord>, StoreError>> + Send;

    /// Decisions, newest first, filtered and paged (reads the
    /// `decisions_listing` index).
    fn list_decisions(
        &self,
        query: DecisionQuery,
    ) -> impl Future<Output = Result<DecisionPage, StoreError>> + Send;

    /// Retention: deletes attempts, decisions, final deliveries and events
    /// without deliveries older than `cutoff_ms` (with the events' repeat
    /// marks, digest memberships and closed digest windows), and dedup
    /// windows that ended before it; never pending work, nor a member of a
    /// digest window not yet closed. NOT one
    /// transaction: steps of at most [`PRUNE_BATCH`] rows, each its own
    /// transaction, so other writes go in between. Returns rows deleted.
    fn prune(&self, cutoff_ms: i64) -> impl Future<Output = Result<usize, StoreError>> + Send;

    // -- incidents and escalation (DESIGN §19) --------------------------------

    /// Records an event's part in its incident, in one transaction: joins
    /// the key's open (or acknowledged) incident, opens one (`open`, when
    /// the event does not resolve), or resolves it (its chain stops; when
    /// steps ran, its resolved notice is due at once).
    /// Idempotent on the event id (a retried ingest changes nothing).
    fn incident_event(
        &self,
        change: IncidentEvent,
    ) -> impl Future<Output = Result<IncidentChange, StoreError>> + Send;

    /// Incidents whose next step is due at `now_ms` (open ones, and
    /// resolved ones whose resolved notice is due), with their latest
    /// event, and the earliest due time of the others. A read.
    fn due_steps(&self, now_ms: i64) -> impl Future<Output = Result<DueSteps, StoreError>> + Send;

    /// Stores one step (its event and deliveries, the step's record and the
    /// chain's next due time) in ONE transaction, only while the incident
    /// is due at position `seq` (open, or resolved with its notice due); `None` (nothing written) otherwise, so
    /// a step runs once however often it is tried. The event comes back for
    /// dispatch.
    fn run_step(
        &self,
        step: StepRun,
    ) -> impl Future<Output = Result<(Option<Accepted>, NewEvent), StoreError>> + Send;

    /// Incidents, newest first, optionally of one state. A read.
    fn list_incidents(
        &self,
        state: Option<String>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Incident>, StoreError>> + Send;

    /// Acknowledges an open incident (its chain stops: no later step is
    /// stored), recording who and when, in one transaction; `None` when no
    /// incident has the id, the incident unchanged when it was not open.
    fn ack_incident(
        &self,
        id: &str,
        by: &str,
        at_ms: i64,
    ) -> impl Future<Output = Result<Option<(bool, Incident)>, StoreError>> + Send;

    /// One incident with its event ids and steps (with their deliveries'
    /// states). A read.
    fn get_incident(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<IncidentDetail>, StoreError>> + Send;

    /// Acknowledges through a signed link: records the link's `nonce` as
    /// used and acknowledges the incident like [`Storage::ack_incident`], in
    /// ONE transaction; [`LinkAck::Used`] (nothing changes) when the nonce
    /// was used before, so a link acknowledges at most once.
    fn ack_incident_by_link(
        &self,
        id: &str,
        nonce: &str,
        by: &str,
        at_ms: i64,
    ) -> impl Future<Output = Result<LinkAck, StoreError>> + Send;

    /// The id of the incident an event belongs to, if any. A read.
    fn incident_of_event(
        &self,
        event_id: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// The id of the unresolved (open or acknowledged) incident of `key`,
    /// if any. A read.
    fn unresolved_incident(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// The escalation policies created through the API, oldest first.
    fn list_escalations(
        &self,
    ) -> impl Future<Output = Result<Vec<StoredEscalation>, StoreError>> + Send;

    /// Stores a policy created through the API; false (nothing written)
    /// when one of that name is stored already.
    fn insert_escalation(
        &self,
        policy: StoredEscalation,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes an API policy; false when none has the name.
    fn delete_escalation(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes at most `limit` incidents resolved before `cutoff_ms` with
    /// their event links, steps and used ack-link nonces, in one
    /// transaction. Open and acknowledged incidents stay. Returns the
    /// incidents deleted ([`prune_incidents`] repeats it).
    fn prune_incidents(
        &self,
        cutoff_ms: i64,
        limit: usize,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

/// Deletes every incident resolved before `cutoff_ms` (with what hangs off
/// it), [`PRUNE_BATCH`] incidents per transaction so other writes go in
/// between. Returns the incidents deleted.
pub async fn prune_incidents(store: &impl Storage, cutoff_ms: i64) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let n = store.prune_incidents(cutoff_ms, PRUNE_BATCH).await?;
        total += n;
        if n < PRUNE_BATCH {
            return Ok(total);
        }
    }
}

/// The lease of a store without `storage.lease_ms`.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The store the relay runs on, chosen at start from `storage:`.
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens the configured backend (creating and migrating its schema).
    pub async fn open(cfg: &StorageConfig) -> Result<Store, StoreError> {
        match &cfg.backend {
            StorageBackend::Sqlite(path) => Ok(Store::Sqlite(sqlite::SqliteStore::open(&path.0)?)),
            StorageBackend::Postgres(url) => Ok(Store::Postgres(
                postgres::PgStore::connect(url.expose(), Duration::from_millis(cfg.lease_ms))
                    .await?,
            )),
        }
    }

    /// How long a claim holds a delivery (`storage.lease_ms`; SQLite: the
    /// default, unused).
    pub fn lease(&self) -> Duration {
        match self {
            Store::Sqlite(_) => DEFAULT_LEASE,
            Store::Postgres(p) => p.lease(),
        }
    }

    /// Whether other instances share this store (leases matter).
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// Opens a SQLite store at `path` (tests, benches, `relay render`).
    pub fn open_sqlite(path: &std::path::Path) -> Result<Store, StoreError> {
        Ok(Store::Sqlite(sqlite::SqliteStore::open(path)?))
    }
}

/// Checks `storage:` beyond what parsing checks, for `relay check` and
/// `serve`: a Postgres URL must parse (the error never shows it).
pub fn check_config(cfg: &StorageConfig) -> Result<(), StoreError> {
    match &cfg.backend {
        StorageBackend::Sqlite(_) => Ok(()),
        StorageBackend::Postgres(url) => postgres::parse_url(url.expose()).map(|_| ()),
    }
}

/// For `relay check`: [`check_config`], and a database server must answer
/// (one connection, bounded; nothing is written).
pub async fn check_reachable(cfg: &StorageConfig) -> Result<(), StoreError> {
    check_config(cfg)?;
    match &cfg.backend {
        StorageBackend::Sqlite(_) => Ok(()),
        StorageBackend::Postgres(url) => postgres::ping(url.expose()).await,
    }
}

/// Runs `$body` with `$s` bound to the backend behind a [`Store`].
macro_rules! each {
    ($store:expr, $s:ident => $body:expr) => {
        match $store {
            Store::Sqlite($s) => $body,
            Store::Postgres($s) => $body,
        }
    };
}

impl Storage for Store {
    async fn accept(
        &self,
        batch: Vec<NewEvent>,
    ) -> Result<(Vec<Accepted>, Vec<NewEvent>), StoreError> {
        each!(self, s => s.accept(batch).await)
    }
    async fn add_deliveries(
        &self,
        event_id: &str,
        targets: Vec<Target>,
        held: Vec<Attempt>,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.add_deliveries(event_id, targets, held).await)
    }
    async fn resend(&self, delivery_id: &str) -> Result<Option<(Delivery, Event)>, StoreError> {
        each!(self, s => s.resend(delivery_id).await)
    }
    fn on_new_work(&self, wake: Arc<Notify>) {
        each!(self, s => s.on_new_work(wake))
    }
    async fn claim_due(
        &self,
        webhook_id: &str,
        limit: usize,
        lease: Duration,
        busy: Busy,
    ) -> Result<Claimed, StoreError> {
        each!(self, s => s.claim_due(webhook_id, limit, lease, busy).await)
    }
    async fn renew(&self, delivery_ids: Vec<String>, lease: Duration) -> Result<(), StoreError> {
        each!(self, s => s.renew(delivery_ids, lease).await)
    }
    async fn due_webhooks(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        each!(self, s => s.due_webhooks(now_ms).await)
    }
    async fn still_due(&self, delivery_id: &str, attempts: u32) -> Result<bool, StoreError> {
        each!(self, s => s.still_due(delivery_id, attempts).await)
    }
    async fn record_attempt(
        &self,
        record: AttemptRecord,
    ) -> Result<Option<WebhookState>, StoreError> {
        each!(self, s => s.record_attempt(record).await)
    }
    async fn record_paused(
        &self,
        attempt: Attempt,
        catch_all: Option<Target>,
    ) -> Result<(), StoreError> {
        each!(self, s => s.record_paused(attempt, catch_all).await)
    }
    async fn due_digests(&self, now_ms: i64) -> Result<DueDigests, StoreError> {
        each!(self, s => s.due_digests(now_ms).await)
    }
    async fn seal_digest(&self, id: &str) -> Result<Option<SealedDigest>, StoreError> {
        each!(self, s => s.seal_digest(id).await)
    }
    async fn finish_digest(
        &self,
        id: &str,
        digest: NewEvent,
        members: std::ops::Range<usize>,
    ) -> Result<(Option<Accepted>, NewEvent), StoreError> {
        each!(self, s => s.finish_digest(id, digest, members).await)
    }
    async fn routing_of(&self, event_id: &str) -> Result<RoutingRecord, StoreError> {
        each!(self, s => s.routing_of(event_id).await)
    }
    async fn load_api_webhooks(&self) -> Result<Vec<StoredWebhook>, StoreError> {
        each!(self, s => s.load_api_webhooks().await)
    }
    async fn save_api_webhook(&self, webhook: StoredWebhook) -> Result<(), StoreError> {
        each!(self, s => s.save_api_webhook(webhook).await)
    }
    async fn delete_api_webhook(&self, id: &str) -> Result<bool, StoreError> {
        each!(self, s => s.delete_api_webhook(id).await)
    }
    async fn load_webhook_states(&self) -> Result<Vec<(String, WebhookState)>, StoreError> {
        each!(self, s => s.load_webhook_states().await)
    }
    async fn save_webhook_state(
        &self,
        webhook_id: &str,
        state: WebhookState,
    ) -> Result<(), StoreError> {
        each!(self, s => s.save_webhook_state(webhook_id, state).await)
    }
    async fn load_first_seen(&self) -> Result<Vec<(String, i64)>, StoreError> {
        each!(self, s => s.load_first_seen().await)
    }
    async fn save_rebuilt(
        &self,
        states: Vec<(String, WebhookState)>,
        first_seen: Vec<(String, i64)>,
    ) -> Result<(), StoreError> {
        each!(self, s => s.save_rebuilt(states, first_seen).await)
    }
    async fn get_event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        each!(self, s => s.get_event(id).await)
    }
    async fn load_destination_state(
        &self,
        webhook_id: &str,
        incident_key: &str,
    ) -> Result<Option<String>, StoreError> {
        each!(self, s => s.load_destination_state(webhook_id, incident_key).await)
    }
    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        each!(self, s => s.get_delivery(id).await)
    }
    async fn list_attempts(
        &self,
        webhook_id: &str,
        query: HistoryQuery,
    ) -> Result<Page, StoreError> {
        each!(self, s => s.list_attempts(webhook_id, query).await)
    }
    async fn delivery_attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>, StoreError> {
        each!(self, s => s.delivery_attempts(delivery_id).await)
    }
    async fn queue_depth(&self, now_ms: i64) -> Result<Vec<QueueDepth>, StoreError> {
        each!(self, s => s.queue_depth(now_ms).await)
    }
    async fn prune(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        each!(self, s => s.prune(cutoff_ms).await)
    }
    async fn add_decisions(&self, decisions: Vec<DecisionRecord>) -> Result<(), StoreError> {
        each!(self, s => s.add_decisions(decisions).await)
    }
    async fn event_decisions(&self, event_id: &str) -> Result<Vec<DecisionRecord>, StoreError> {
        each!(self, s => s.event_decisions(event_id).await)
    }
    async fn list_decisions(&self, query: DecisionQuery) -> Result<DecisionPage, StoreError> {
        each!(self, s => s.list_decisions(query).await)
    }
    async fn incident_event(&self, change: IncidentEvent) -> Result<IncidentChange, StoreError> {
        each!(self, s => s.incident_event(change).await)
    }
    async fn due_steps(&self, now_ms: i64) -> Result<DueSteps, StoreError> {
        each!(self, s => s.due_steps(now_ms).await)
    }
    async fn run_step(&self, step: StepRun) -> Result<(Option<Accepted>, NewEvent), StoreError> {
        each!(self, s => s.run_step(step).await)
    }
    async fn list_incidents(
        &self,
        state: Option<String>,
        limit: u32,
    ) -> Result<Vec<Incident>, StoreError> {
        each!(self, s => s.list_incidents(state, limit).await)
    }
    async fn get_incident(&self, id: &str) -> Result<Option<IncidentDetail>, StoreError> {
        each!(self, s => s.get_incident(id).await)
    }
    async fn ack_incident(
        &self,
        id: &str,
        by: &str,
        at_ms: i64,
    ) -> Result<Option<(bool, Incident)>, StoreError> {
        each!(self, s => s.ack_incident(id, by, at_ms).await)
    }
    async fn ack_incident_by_link(
        &self,
        id: &str,
        nonce: &str,
        by: &str,
        at_ms: i64,
    ) -> Result<LinkAck, StoreError> {
        each!(self, s => s.ack_incident_by_link(id, nonce, by, at_ms).await)
    }
    async fn incident_of_event(&self, event_id: &str) -> Result<Option<String>, StoreError> {
        each!(self, s => s.incident_of_event(event_id).await)
    }
    async fn unresolved_incident(&self, key: &str) -> Result<Option<String>, StoreError> {
        each!(self, s => s.unresolved_incident(key).await)
    }
    async fn list_escalations(&self) -> Result<Vec<StoredEscalation>, StoreError> {
        each!(self, s => s.list_escalations().await)
    }
    async fn insert_escalation(&self, policy: StoredEscalation) -> Result<bool, StoreError> {
        each!(self, s => s.insert_escalation(policy).await)
    }
    async fn delete_escalation(&self, name: &str) -> Result<bool, StoreError> {
        each!(self, s => s.delete_escalation(name).await)
    }
    async fn prune_incidents(&self, cutoff_ms: i64, limit: usize) -> Result<usize, StoreError> {
        each!(self, s => s.prune_incidents(cutoff_ms, limit).await)
    }
}
