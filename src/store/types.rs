//! The records the storage interface takes and returns: plain data, no
//! database types, the same for every backend.
//!
//! Owns: the shapes of stored events, deliveries, attempts (the JSON of an
//! attempt in the history, DESIGN.md §9), webhook state and retention steps.

use serde::Serialize;

use crate::event::Event;

// ---------------------------------------------------------------------------
// Errors

/// What a storage operation can fail with. Never carries a database URL or
/// password: backends build the message from the error's kind and text, not
/// from their connection settings.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed an operation (I/O, constraint, lost
    /// connection, ...).
    #[error("storage error: {0}")]
    Database(String),
    #[error("storage is shut down")]
    Closed,
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The configured backend cannot be used by this build.
    #[error("{0}")]
    Unsupported(String),
}

// ---------------------------------------------------------------------------
// Events and deliveries

/// How a new delivery starts, from its webhook's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Due now (webhook active).
    Due,
    /// Waiting behind a tripped breaker (`paused`), due once re-enabled.
    Paused,
    /// Final as skipped (webhook disabled by an operator); resendable.
    Skipped,
}

/// Where one event goes: the delivery's id (chosen before the write, so
/// dispatch can reserve it), the webhook, and how the delivery starts.
#[derive(Debug, Clone)]
pub struct Target {
    pub delivery_id: String,
    pub webhook_id: String,
    pub start: Start,
}

/// A delivery that did not start due: (delivery id, webhook id, how).
pub type Held = (String, String, Start);

/// One event to accept: the event, its stored form ([`event_json`]), where
/// it goes, and the history records of the targets that did not start due
/// (`history::held`), written only when the event is new.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event: Event,
    pub body: String,
    pub targets: Vec<Target>,
    pub held: Vec<Attempt>,
    /// The routing decisions about the event (DESIGN §17), written with it.
    pub decisions: Vec<DecisionRecord>,
    /// Digest windows this event joins instead of a delivery (DESIGN §17).
    pub digests: Vec<DigestMember>,
    /// The dedup key of `routing.dedup`: when another event holds the key
    /// in an open window, this one is stored as a repeat of it and gets no
    /// delivery and joins no digest.
    pub dedup: Option<DedupKey>,
}

/// An event's membership in its webhook's open digest window for a group.
/// The window opens with its first member and closes `window_ms` later, or
/// as soon as it holds `max_events` members.
#[derive(Debug, Clone)]
pub struct DigestMember {
    pub webhook_id: String,
    /// The webhook's name when the event joined (its `digested` decision's
    /// `webhook_name`: the membership is that decision, see
    /// [`digested_decision`]).
    pub webhook_name: String,
    /// The group's values as JSON (`{"tenant": "acme"}`): its identity.
    pub group: String,
    pub window_ms: i64,
    pub max_events: u32,
}

/// A rendered dedup key and the window it holds for.
#[derive(Debug, Clone)]
pub struct DedupKey {
    pub key: String,
    pub window_ms: i64,
}

/// A digest window that is due to close (its time has come, or it is
/// full), with its members in arrival order.
#[derive(Debug, Clone)]
pub struct SealedDigest {
    pub id: String,
    pub webhook_id: String,
    /// The group's values as JSON.
    pub group: String,
    pub opened_at_ms: i64,
    /// Each member's stored body (its [`event_json`]), in arrival order.
    pub members: Vec<String>,
}

/// What [`Storage::due_digests`](super::Storage::due_digests) found.
#[derive(Debug, Clone, Default)]
pub struct DueDigests {
    /// Windows to close now (full, or past their end), oldest first.
    pub due: Vec<String>,
    /// The earliest end of a window still open, if any.
    pub next_close_ms: Option<i64>,
}

/// What routing stored about one event (for its explanation): the event
/// it repeats (dedup), how many repeats it absorbed, and the digests it
/// joined as (webhook id, digest id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingRecord {
    pub deduped_into: Option<String>,
    pub repeats: u64,
    pub digests: Vec<(String, String)>,
}

/// The decision recorded for an event stored as a repeat (dedup): one for
/// the whole event, pointing at the event it was counted on.
pub fn deduped_decision(event_id: &str, into: &str, now_ms: i64) -> DecisionRecord {
    DecisionRecord {
        event_id: event_id.to_owned(),
        webhook_id: None,
        webhook_name: None,
        decision: "deduped".into(),
        rule: Some("dedup".into()),
        reference: Some(into.to_owned()),
        created_at_ms: now_ms,
    }
}

/// The decision recorded when the store creates an event's catch-all
/// delivery after its other deliveries all ended failed, skipped or paused.
pub fn catch_all_decision(event_id: &str, t: &Target, now_ms: i64) -> DecisionRecord {
    DecisionRecord {
        event_id: event_id.to_owned(),
        webhook_id: Some(t.webhook_id.clone()),
        webhook_name: None,
        decision: "catch_all".into(),
        rule: Some("every delivery ended failed, skipped or paused".into()),
        reference: Some(t.delivery_id.clone()),
        created_at_ms: now_ms,
    }
}

/// Whether a decision is stored as a row of its own. A `digested` decision
/// is not: the event's digest membership (written in the same transaction,
/// with its time and the webhook's name) is that decision, read back by
/// [`digested_decision`] — one row per digested event instead of two, and
/// three fewer B-tree entries on the writer's hot path (issue 15).
pub fn is_recorded(d: &DecisionRecord) -> bool {
    d.decision != "digested"
}

/// The `digested` decision a digest membership stands for: the webhook's
/// digest `digest_id` took `event_id` at `at_ms` (rule `digest`, `ref` the
/// digest, as the router decided it).
pub fn digested_decision(
    event_id: String,
    webhook_id: String,
    webhook_name: Option<String>,
    digest_id: String,
    at_ms: i64,
) -> DecisionRecord {
    DecisionRecord {
        event_id,
        webhook_id: Some(webhook_id),
        webhook_name,
        decision: "digested".into(),
        rule: Some("digest".into()),
        reference: Some(digest_id),
        created_at_ms: at_ms,
    }
}

/// An event's decisions in the order they were made: the rows (in write
/// order) and its memberships ([`digested_decision`]), each of those after
/// the rows of its time (the router's decisions of the event come first).
pub fn with_memberships(
    mut rows: Vec<DecisionRecord>,
    memberships: Vec<DecisionRecord>,
) -> Vec<DecisionRecord> {
    for m in memberships {
        let at = rows
            .iter()
            .position(|d| d.created_at_ms > m.created_at_ms)
            .unwrap_or(rows.len());
        rows.insert(at, m);
    }
    rows
}

/// The delivery id of an event's catch-all delivery: the same for every
/// instance and every attempt, so the catch-all is created at most once per
/// event (the insert is ignored when the row exists).
pub fn catch_all_delivery_id(event_id: &str) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(event_id.as_bytes());
    format!("catch-all-{}", hex::encode(&hash[..16]))
}

/// The result of accepting one event.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub id: String,
    pub deliveries: u32,
    /// The id was known: nothing was created, `deliveries` is the first
    /// acceptance's count.
    pub duplicate: bool,
    /// Deliveries stored as skipped (webhook disabled) or paused (breaker
    /// tripped).
    pub held: Vec<Held>,
    /// The event was a repeat of this one within its dedup window: stored,
    /// with no delivery.
    pub deduped_into: Option<String>,
}

/// The stored form of an event (its JSON). Made by the caller before the
/// write, so that a backend's writer does not spend its time serializing.
pub fn event_json(event: &Event) -> Result<String, StoreError> {
    serde_json::to_string(event)
        .map_err(|e| StoreError::Corrupt(format!("event {}: {e}", event.id)))
}

/// A delivery to attempt, with its event.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery_id: String,
    pub webhook_id: String,
    /// Attempts already made.
    pub attempts: u32,
    pub event: Event,
}

/// What one [`Storage::claim_due`](super::Storage::claim_due) found.
#[derive(Debug, Default)]
pub struct Claimed {
    /// Deliveries now leased to this instance, oldest due first.
    pub due: Vec<DueDelivery>,
    /// Due deliveries whose event no longer exists (pruned while a replay
    /// created them); they were ended as failed.
    pub orphans: usize,
    /// More were due than `limit`: the caller should look again soon.
    pub saturated: bool,
}

/// The deliveries this process already holds (queued or running) of the
/// webhook being claimed: `contains` answers for one id, `count` is how
/// many there are (a backend that reads candidates before filtering reads
/// that many more).
#[derive(Clone)]
pub struct Busy {
    pub count: usize,
    pub contains: std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

impl Busy {
    /// Nothing held.
    pub fn none() -> Busy {
        Busy {
            count: 0,
            contains: std::sync::Arc::new(|_| false),
        }
    }
}

impl std::fmt::Debug for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Busy").field("count", &self.count).finish()
    }
}

/// A delivery row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    pub webhook_id: String,
    pub status: String,
    pub attempts: u32,
}

/// Deliveries not final yet of one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub webhook_id: String,
    /// Not final (pending, retrying, paused).
    pub pending: u64,
    /// Of those, due now.
    pub due: u64,
}

// ---------------------------------------------------------------------------
// Attempts (the history)

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

    /// The stored text back; anything unknown reads as failed.
    pub fn parse(s: &str) -> Status {
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

/// Filters for a webhook's history.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub status: Option<Status>,
    pub success: Option<bool>,
    /// Only attempts at or after this time (ms).
    pub since_ms: Option<i64>,
    /// Page size; backends clamp it to 1..=1000.
    pub limit: usize,
    /// Only attempts older than this cursor (the `next` of the previous
    /// page: an opaque sequence number).
    pub before: Option<i64>,
}

/// A page of attempts, newest first, with the cursor of the next page.
#[derive(Debug, Clone)]
pub struct Page {
    pub data: Vec<Attempt>,
    pub next: Option<String>,
}

/// An attempt to record with what it changes (see
/// [`Storage::record_attempt`](super::Storage::record_attempt)).
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempt: Attempt,
    /// The delivery's next due time: `Some` for a retry, `None` once final.
    pub due_at: Option<i64>,
    pub breaker: BreakerChange,
    /// `routing.catch_all`'s delivery of this event, created (once per
    /// event) in the same transaction when this attempt leaves every
    /// delivery of the event failed, skipped or paused (and the event is
    /// in no digest). `None`: no catch-all, or this is its own delivery.
    pub catch_all: Option<Target>,
    /// What a stateful destination keeps for (webhook, incident key) after
    /// this attempt, when its `classify` changed it (DESIGN §18): written
    /// in the attempt's transaction, so a created ticket's id is never lost
    /// once the attempt is recorded. `None`: unchanged.
    pub destination_state: Option<DestinationState>,
}

/// A stateful destination's kept state for one incident key; `state: None`
/// forgets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationState {
    pub incident_key: String,
    pub state: Option<String>,
}

/// What an attempt's outcome does to its webhook's circuit breaker. Applied
/// by the store to the stored counters in the attempt's transaction, so
/// that instances sharing a database count every failure (DESIGN §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerChange {
    /// The outcome does not move the breaker.
    None,
    /// A delivery succeeded: the failure streak ends. `streak` says whether
    /// this instance knows of one; a single-process backend may skip the
    /// write when it does not, a shared one resets whatever it knows.
    Success { streak: bool },
    /// A delivery failed for good because of the receiver: one more
    /// failure; an active webhook pauses once the count reaches
    /// `threshold` (0: never).
    Failure { threshold: u32 },
    /// The receiver said it is gone (410, a plugin's `disable`): an active
    /// webhook pauses now (one more failure is counted too).
    Trip,
}

// ---------------------------------------------------------------------------
// Webhooks

/// An API-created webhook as stored.
#[derive(Debug, Clone)]
pub struct StoredWebhook {
    pub spec: crate::config::WebhookSpec,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Who disabled a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Api,
    File,
}

/// Whether a webhook's deliveries go out (DESIGN §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Active,
    /// The circuit breaker tripped: deliveries wait.
    Paused,
    /// An operator disabled it: deliveries are recorded as skipped.
    Disabled(Operator),
}

impl Activity {
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Active => "active",
            Activity::Paused => "paused",
            Activity::Disabled(Operator::Api) => "disabled",
            Activity::Disabled(Operator::File) => "disabled_by_file",
        }
    }

    /// The stored text back.
    pub fn parse(s: &str) -> Option<Activity> {
        [
            Activity::Active,
            Activity::Paused,
            Activity::Disabled(Operator::Api),
            Activity::Disabled(Operator::File),
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }

    /// A small number for an atomic.
    pub fn code(self) -> u8 {
        match self {
            Activity::Active => 0,
            Activity::Paused => 1,
            Activity::Disabled(Operator::Api) => 2,
            Activity::Disabled(Operator::File) => 3,
        }
    }

    pub fn from_code(c: u8) -> Activity {
        match c {
            0 => Activity::Active,
            1 => Activity::Paused,
            3 => Activity::Disabled(Operator::File),
            _ => Activity::Disabled(Operator::Api),
        }
    }
}

/// A webhook's breaker state as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookState {
    pub activity: Activity,
    pub failure_count: u32,
}

impl WebhookState {
    pub fn is_active(&self) -> bool {
        self.activity == Activity::Active
    }
}

// ---------------------------------------------------------------------------
// Retention

/// Most rows one retention step deletes (and events it looks at). Each
/// step is its own transaction, so this bounds how long retention holds
/// the store at a time: ~3 ms per step on SQLite (median; p99 8–12 ms on a
/// loaded machine) in the test
/// `pruning_a_million_attempts_leaves_the_writer_free_between_batches`.
pub const PRUNE_BATCH: usize = 1000;

// ---------------------------------------------------------------------------
// Routing decisions (DESIGN §17)

/// One routing decision about one event: for one webhook
/// (`webhook_id` set) or for the event as a whole (suppression). Written
/// in the event's accept transaction, or by whoever decides later
/// (dispatch: `paused`, `skipped`; the catch-all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionRecord {
    pub event_id: String,
    pub webhook_id: Option<String>,
    /// The webhook's name when decided (viewers see names, never specs).
    pub webhook_name: Option<String>,
    /// `delivered`, `filtered`, `type`, `suppressed`, `deduped`,
    /// `digested`, `muted`, `paused`, `skipped`, `catch_all`.
    pub decision: String,
    /// The rule behind it (`filter.severity`, a suppression rule's name,
    /// a mute window).
    pub rule: Option<String>,
    /// What it points to: the delivery id (`delivered`, `paused`,
    /// `skipped`), the event deduped into, the digest.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    #[serde(skip)]
    pub created_at_ms: i64,
}

/// Filters for a listing of decisions, newest first.
#[derive(Debug, Clone, Default)]
pub struct DecisionQuery {
    pub decision: Option<String>,
    /// Only decisions at or after this time (ms).
    pub since_ms: Option<i64>,
    /// Page size; backends clamp it to 1..=1000.
    pub limit: usize,
    /// Only decisions older than this cursor (the `next` of the previous
    /// page, opaque).
    pub before: Option<DecisionCursor>,
}

/// Where a page of decisions ends, in each of the listing's two sources:
/// the decision rows (time, `seq`) and the digest memberships
/// ([`MemberCursor`]; `digested` decisions, see [`is_recorded`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionCursor {
    pub at_ms: i64,
    pub seq: i64,
    pub member: MemberCursor,
}

/// A position among digest memberships, newest first: (time, digest, its
/// place in the digest).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemberCursor {
    pub at_ms: i64,
    pub digest_id: String,
    pub pos: i64,
}

impl MemberCursor {
    /// Before every membership (the first page).
    pub fn top() -> MemberCursor {
        MemberCursor {
            at_ms: i64::MAX,
            digest_id: String::new(),
            pos: i64::MAX,
        }
    }
}

impl DecisionCursor {
    /// Before every decision (the first page).
    pub fn top() -> DecisionCursor {
        DecisionCursor {
            at_ms: i64::MAX,
            seq: i64::MAX,
            member: MemberCursor::top(),
        }
    }

    pub fn encode(&self) -> String {
        let m = &self.member;
        format!(
            "{}-{}.{}-{}-{}",
            self.at_ms, self.seq, m.at_ms, m.pos, m.digest_id
        )
    }

    pub fn decode(s: &str) -> Option<DecisionCursor> {
        let (rows, member) = s.split_once('.')?;
        let (a, b) = rows.split_once('-')?;
        let mut m = member.splitn(3, '-');
        Some(DecisionCursor {
            at_ms: a.parse().ok()?,
            seq: b.parse().ok()?,
            member: MemberCursor {
                at_ms: m.next()?.parse().ok()?,
                pos: m.next()?.parse().ok()?,
                digest_id: m.next()?.to_owned(),
            },
        })
    }
}

/// One page of a listing from its two sources, each read newest first past
/// `from` (at most `limit + 1` of each): decision rows with their `seq`, and
/// digest memberships with their [`MemberCursor`]. Merged by time, newest
/// first (a row before a membership of the same millisecond); the cursor
/// holds where the page ended in each source.
pub fn merge_page(
    rows: Vec<(i64, ListedDecision)>,
    members: Vec<(MemberCursor, ListedDecision)>,
    limit: usize,
    from: DecisionCursor,
) -> DecisionPage {
    let mut cursor = from;
    let mut data = Vec::with_capacity(limit.min(rows.len() + members.len()));
    let (mut rows, mut members) = (rows.into_iter().peekable(), members.into_iter().peekable());
    while data.len() < limit {
        let row_first = match (rows.peek(), members.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((_, r)), Some((_, m))) => r.record.created_at_ms >= m.record.created_at_ms,
        };
        if row_first {
            if let Some((seq, d)) = rows.next() {
                (cursor.at_ms, cursor.seq) = (d.record.created_at_ms, seq);
                data.push(d);
            }
        } else if let Some((at, d)) = members.next() {
            cursor.member = at;
            data.push(d);
        }
    }
    let more = rows.peek().is_some() || members.peek().is_some();
    DecisionPage {
        data,
        next: more.then_some(cursor),
    }
}

/// A listed decision with its event's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedDecision {
    pub record: DecisionRecord,
    pub event_type: Option<String>,
}

/// A page of decisions with the cursor of the next page.
#[derive(Debug, Clone)]
pub struct DecisionPage {
    pub data: Vec<ListedDecision>,
    pub next: Option<DecisionCursor>,
}

// -- incidents and escalation (DESIGN §19) ----------------------------------

/// An event's part in its incident, written by `Storage::incident_event`.
#[derive(Debug, Clone)]
pub struct IncidentEvent {
    pub key: String,
    pub event_id: String,
    pub at_ms: i64,
    /// Opens an incident when none with the key is open (and the event
    /// does not resolve): its id, policy and first step's due time.
    pub open: Option<IncidentOpen>,
    /// The event resolves the open incident of its key.
    pub resolves: bool,
}

/// A new incident's id and its escalation chain's start.
#[derive(Debug, Clone)]
pub struct IncidentOpen {
    pub id: String,
    pub policy: Option<String>,
    /// When the chain's first step is due (`None`: no chain).
    pub first_due_ms: Option<i64>,
}

/// What `Storage::incident_event` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentChange {
    /// No incident was open for the key and the event opens none (or the
    /// event was recorded before).
    Untouched,
    Opened(String),
    Joined(String),
    Resolved(String),
}

/// An incident's lifecycle state.
pub const INCIDENT_STATES: [&str; 3] = ["open", "acknowledged", "resolved"];

/// A stored incident.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Incident {
    pub id: String,
    pub key: String,
    /// `open`, `acknowledged` or `resolved`.
    pub state: String,
    pub policy: Option<String>,
    pub opened_at_ms: i64,
    pub events: u32,
    pub last_event_id: String,
    /// The chain's next position and when it is due; `None` when the chain
    /// ended or stopped.
    pub next_step: u32,
    pub next_due_ms: Option<i64>,
    pub acked_by: Option<String>,
    pub acked_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
}

/// An escalation policy created through the API, as stored: its name and
/// its spec as JSON (`config::escalation::EscalationSpec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEscalation {
    pub name: String,
    pub spec: String,
    pub created_at_ms: i64,
}

/// What acknowledging through a signed link did
/// (`Storage::ack_incident_by_link`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkAck {
    /// The link's nonce was used before: nothing changed.
    Used,
    /// No incident has the link's id.
    Unknown,
    /// The nonce is now used; `changed` is false when the incident was not
    /// open (acknowledged or resolved already).
    Done {
        changed: bool,
        incident: Box<Incident>,
    },
}

/// One step of an incident's chain that ran, with its deliveries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IncidentStep {
    /// `step` or `resolved`.
    pub kind: String,
    pub seq: u32,
    pub step_index: u32,
    pub round: u32,
    /// The event the step's deliveries carry.
    pub event_id: String,
    pub due_ms: i64,
    pub ran_at_ms: i64,
    /// Webhooks the policy's `skip` kept from this step.
    pub skipped: Vec<String>,
    pub deliveries: Vec<StepDelivery>,
}

/// A delivery a step made, with its current state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepDelivery {
    pub delivery_id: String,
    pub webhook_id: String,
    pub status: String,
}

/// An incident with its events (ids, arrival order) and the steps run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IncidentDetail {
    pub incident: Incident,
    pub event_ids: Vec<String>,
    pub steps: Vec<IncidentStep>,
}

/// Incidents whose next step (or resolved notice) is due, each with its latest event, and the
/// earliest due time of the others.
#[derive(Debug, Clone, Default)]
pub struct DueSteps {
    pub due: Vec<(Incident, Event)>,
    pub next_due_ms: Option<i64>,
    /// Incidents not resolved (the `relay_incidents_open` gauge).
    pub open: u64,
}

/// The latest event of `incident` from its stored body; when retention
/// pruned it, an empty event of type `incident` under its id (the chain
/// goes on with what the incident row knows).
pub fn latest_event(incident: &Incident, body: Option<String>) -> Result<Event, StoreError> {
    match body {
        Some(b) => serde_json::from_str::<Event>(&b)
            .map_err(|e| StoreError::Corrupt(format!("event {}: {e}", incident.last_event_id))),
        None => Ok(Event {
            id: incident.last_event_id.clone(),
            event_type: "incident".into(),
            time: crate::event::rfc3339_ms(incident.opened_at_ms),
            data: serde_json::json!({}).into(),
        }),
    }
}

/// One step to record: its deliveries (an event of its own, with targets)
/// and the chain's next due time, written in one transaction only while
/// the incident is still `open` at position `seq`.
#[derive(Debug)]
pub struct StepRun {
    pub incident_id: String,
    pub seq: u32,
    pub step_index: u32,
    pub round: u32,
    pub due_ms: i64,
    pub next_due_ms: Option<i64>,
    pub skipped: Vec<String>,
    /// `step` or `resolved` (the resolving event to the webhooks notified).
    pub kind: &'static str,
    pub event: NewEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(event: &str, decision: &str, at: i64) -> ListedDecision {
        ListedDecision {
            record: DecisionRecord {
                event_id: event.into(),
                webhook_id: Some("w".into()),
                webhook_name: None,
                decision: decision.into(),
                rule: None,
                reference: None,
                created_at_ms: at,
            },
            event_type: None,
        }
    }

    fn member(event: &str, at: i64, digest: &str, pos: i64) -> (MemberCursor, ListedDecision) {
        (
            MemberCursor {
                at_ms: at,
                digest_id: digest.into(),
                pos,
            },
            listed(event, "digested", at),
        )
    }

    fn events(p: &DecisionPage) -> Vec<&str> {
        p.data.iter().map(|d| d.record.event_id.as_str()).collect()
    }

    #[test]
    fn a_listing_page_merges_rows_and_memberships_newest_first_and_resumes_each_source_where_it_ended()
     {
        // Rows (seq 3, 2, 1) at 30, 20, 10; members at 25, 20, 5.
        let rows = || {
            vec![
                (3, listed("r30", "delivered", 30)),
                (2, listed("r20", "delivered", 20)),
                (1, listed("r10", "delivered", 10)),
            ]
        };
        let members = || {
            vec![
                member("m25", 25, "d", 3),
                member("m20", 20, "d", 2),
                member("m5", 5, "d", 1),
            ]
        };
        let page = merge_page(rows(), members(), 3, DecisionCursor::top());
        // A row comes before a membership of the same millisecond.
        assert_eq!(events(&page), ["r30", "m25", "r20"]);
        let next = page.next.expect("more");
        assert_eq!((next.at_ms, next.seq), (20, 2));
        assert_eq!(next.member, member("", 25, "d", 3).0);
        // The next page: each source read past its own position.
        let rest_rows = rows().into_iter().filter(|(s, _)| *s < next.seq).collect();
        let rest_members = members()
            .into_iter()
            .filter(|(m, _)| *m < next.member)
            .collect();
        let page = merge_page(rest_rows, rest_members, 3, next.clone());
        assert_eq!(events(&page), ["m20", "r10", "m5"]);
        assert!(page.next.is_none(), "nothing left: {:?}", page.next);
        // One source alone (a listing of one decision) keeps the other's position.
        let page = merge_page(vec![], members(), 2, next.clone());
        assert_eq!(events(&page), ["m25", "m20"]);
        let after = page.next.expect("m5 is left");
        assert_eq!((after.at_ms, after.seq), (next.at_ms, next.seq));
        assert_eq!(after.member, member("", 20, "d", 2).0);
    }

    #[test]
    fn a_cursor_round_trips_with_a_digest_id_holding_dashes_and_a_bad_one_is_refused() {
        let c = DecisionCursor {
            at_ms: 1_700_000_000_000,
            seq: 42,
            member: MemberCursor {
                at_ms: 1_699_999_999_999,
                digest_id: "0193-ab-cd".into(),
                pos: 7,
            },
        };
        assert_eq!(DecisionCursor::decode(&c.encode()), Some(c));
        let top = DecisionCursor::top();
        assert_eq!(DecisionCursor::decode(&top.encode()), Some(top));
        for bad in ["", "12-3", "x-1.2-3-d", "1-2.3-x-d", "1-2.3"] {
            assert_eq!(DecisionCursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_events_memberships_come_after_its_decisions_of_their_time_and_before_later_ones() {
        let d = |decision: &str, at: i64| listed("e", decision, at).record;
        let rows = vec![d("delivered", 10), d("filtered", 10), d("paused", 50)];
        let got = with_memberships(rows, vec![d("digested", 10), d("digested", 11)]);
        let order: Vec<(&str, i64)> = got
            .iter()
            .map(|d| (d.decision.as_str(), d.created_at_ms))
            .collect();
        assert_eq!(
            order,
            [
                ("delivered", 10),
                ("filtered", 10),
                ("digested", 10),
                ("digested", 11),
                ("paused", 50)
            ]
        );
        assert!(!is_recorded(&d("digested", 0)) && is_recorded(&d("delivered", 0)));
    }
}
