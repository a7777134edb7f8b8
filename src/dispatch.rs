//! Dispatch: turns stored deliveries into attempts, and attempts into history.
//!
//! Each webhook has a *lane*: a bounded queue and at most
//! `delivery.concurrency_per_webhook` attempts in flight, so a slow or dead
//! receiver only ever fills its own lane. Fresh deliveries are offered to the
//! lane straight after ingest commits; anything that does not fit, and every
//! retry whose time has come, is found by the poller in the store. A delivery
//! id is in at most one lane slot at a time (the lane's `inflight` set), so
//! one process never runs two attempts of one delivery at once.
//!
//! An attempt: format → sign → deliver → classify → record (attempt row,
//! delivery state, breaker state in one transaction). A stateful
//! destination (DESIGN §18) also gets its incident: the key
//! (`incident::key`) and the state the store keeps for (webhook, key), read
//! before `build`; the state its `classify` sets or clears is written in
//! that same transaction. The delivery leaves
//! `inflight` only after that commit. A crash before the commit means the
//! delivery is still due on restart and is sent again: at-least-once.
//!
//! Two bounds per lane: at most `concurrency_per_webhook` requests are at
//! the receiver at once (a *send slot*, freed when the exchange ends), and at
//! most [`UNRECORDED_PER_SLOT`] × that many attempts are started but not yet
//! committed (so recording overlaps the next requests, and a crash resends
//! at most that many deliveries of the lane).
//!
//! Every attempt first checks that its delivery row is still due with the
//! same attempt count (an offer can be stale), except the first attempt of a
//! delivery ingest just created: its id was reserved in the lane before the
//! row was written ([`Reservation`]), so nothing else can have offered it.
//!
//! Owns: lanes, the poller, the retry schedule, the breaker decisions.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rand::Rng;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

use crate::config::{DeliveryConfig, IncidentsConfig};
use crate::deliver::{Deliverer, DeliveryError, InResponse, Origin};
use crate::event::{Event, new_id, now_ms};
use crate::format::Formatted;
use crate::history::{self, Attempt, AttemptError, Status};
use crate::plugin::{Incident, Outcome as PluginOutcome, PluginHost, StateChange};
use crate::prepare::{Prepared, destination_of, prepare_shared};
use crate::store::{
    self, Activity, AttemptRecord, BreakerChange, Busy, DestinationState, Storage, Store,
    StoreError,
};
use crate::webhook::{Registry, Webhook};

/// Queue slots per webhook lane (beyond these, deliveries wait in the store).
const LANE_CAPACITY: usize = 512;
/// How often the poller looks for due deliveries when nothing wakes it.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// The shortest time between two polls.
const MIN_POLL_GAP: Duration = Duration::from_millis(20);
/// Attempts started but not yet recorded, per send slot of a lane.
pub const UNRECORDED_PER_SLOT: usize = 2;
/// First pause of dispatch after the store failed to record an attempt;
/// doubled on each further failure up to [`STORE_BACKOFF_MAX`].
const STORE_BACKOFF_MIN: Duration = Duration::from_secs(1);
const STORE_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often the leases of queued and running deliveries are renewed, as a
/// fraction of the lease (`storage.lease_ms`, [`Store::lease`]): well
/// within it, so a live instance never loses one mid-attempt.
const RENEWALS_PER_LEASE: u32 = 4;
/// How often a shared store's breaker states are read back (another
/// instance may have tripped or re-enabled a webhook).
const BREAKER_REFRESH: Duration = Duration::from_secs(1);

/// One delivery to attempt.
#[derive(Debug, Clone)]
pub struct Job {
    pub delivery_id: String,
    pub webhook_id: String,
    /// Attempts already made.
    pub attempts: u32,
    pub event: Arc<Event>,
    /// Known to be the delivery's next attempt (a reserved fresh delivery):
    /// the stale-offer check is skipped.
    pub current: bool,
    /// Bodies already formatted for `event`, shared by the jobs of one
    /// fan-out (see [`Dispatcher::offer_reserved`]); `None` for a job alone.
    pub formatted: Option<Arc<Formatted>>,
}

impl Job {
    /// A job whose row is re-read before the attempt.
    pub fn new(delivery_id: String, webhook_id: String, attempts: u32, event: Arc<Event>) -> Job {
        Job {
            delivery_id,
            webhook_id,
            attempts,
            event,
            current: false,
            formatted: None,
        }
    }

    /// The first attempt of a fresh delivery whose id was reserved in its
    /// lane before its row was written: no re-read needed.
    pub fn reserved(delivery_id: String, webhook_id: String, event: Arc<Event>) -> Job {
        Job {
            current: true,
            ..Job::new(delivery_id, webhook_id, 0, event)
        }
    }
}

/// Delivery ids held in their lanes' `inflight` sets from before the write
/// that creates their rows, so the poller cannot offer them first. Handed to
/// [`Dispatcher::offer_reserved`] after the commit; dropped otherwise (the
/// write failed, or the event was a duplicate), which frees the ids.
pub struct Reservation {
    held: Vec<(Arc<Lane>, String, String)>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        for (lane, delivery_id, _) in &self.held {
            lane.inflight().remove(delivery_id);
        }
    }
}

/// Holds a delivery id in its lane's `inflight` set and frees it when
/// dropped, so that an attempt that panics or is cancelled never leaves its
/// id behind (the poller would never offer the delivery again).
struct Slot {
    lane: Arc<Lane>,
    id: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.lane.inflight().remove(&self.id);
    }
}

struct Lane {
    tx: mpsc::Sender<Job>,
    inflight: Mutex<HashSet<String>>,
    /// Set when an offer did not fit: the poller should look again soon.
    starved: AtomicBool,
}

impl Lane {
    fn inflight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        lock(&self.inflight)
    }
}

/// Cheap to clone; all clones drive the same lanes.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

/// Escalation policies by source (see [`Dispatcher::set_api_escalations`]).
#[derive(Default)]
struct EscalationParts {
    file: Vec<crate::config::escalation::EscalationSpec>,
    api: Vec<crate::config::escalation::EscalationSpec>,
}

struct Inner {
    store: Store,
    registry: Arc<Registry>,
    deliverer: Deliverer,
    plugins: PluginHost,
    config: ArcSwap<DeliveryConfig>,
    /// `incidents:` of relay.yaml: how an event's incident key is made.
    incidents: ArcSwap<IncidentsConfig>,
    /// `escalations:` of relay.yaml (DESIGN §19) and the wake-up of the
    /// task that runs them (`escalator::Escalator`).
    escalations: ArcSwap<Vec<crate::config::escalation::EscalationSpec>>,
    /// The two sources of `escalations`: relay.yaml's, then the API's.
    escalation_parts: Mutex<EscalationParts>,
    escalation_wake: Arc<Notify>,
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
    wake: Arc<Notify>,
    /// Wakes the digest task (see [`Dispatcher::poke_digests`]).
    digest_wake: Arc<Notify>,
    /// Set by [`Dispatcher::drain`]: no new attempt starts.
    stopping: AtomicBool,
    /// Attempts started and not yet recorded (or given up), over all lanes.
    unrecorded: AtomicUsize,
    /// Notified whenever `unrecorded` goes down.
    recorded: Notify,
    /// Set while the store cannot record attempts: dispatch pauses.
    trouble: Mutex<Option<StoreTrouble>>,
    /// The earliest retry due before the poller's next regular look: it
    /// looks then instead (one instant, whatever the number of retries).
    next_retry: Mutex<Option<Instant>>,
}

/// The store failed to record an attempt: no attempt starts before `until`.
#[derive(Debug, Clone, Copy)]
struct StoreTrouble {
    until: Instant,
    backoff: Duration,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        registry: Arc<Registry>,
        deliverer: Deliverer,
        plugins: PluginHost,
        config: DeliveryConfig,
    ) -> Dispatcher {
        let wake = Arc::new(Notify::new());
        // Work accepted by another instance wakes the poller.
        store.on_new_work(wake.clone());
        Dispatcher {
            inner: Arc::new(Inner {
                store,
                registry,
                deliverer,
                plugins,
                config: ArcSwap::from_pointee(config),
                incidents: ArcSwap::from_pointee(IncidentsConfig::default()),
                escalations: ArcSwap::from_pointee(Vec::new()),
                escalation_parts: Mutex::default(),
                escalation_wake: Arc::new(Notify::new()),
                lanes: Mutex::new(HashMap::new()),
                wake,
                digest_wake: Arc::new(Notify::new()),
                stopping: AtomicBool::new(false),
                unrecorded: AtomicUsize::new(0),
                recorded: Notify::new(),
                trouble: Mutex::new(None),
                next_retry: Mutex::new(None),
            }),
        }
    }

    /// Starts the poller; deliveries left due by a previous run are picked up.
    pub fn start(&self) {
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.poll_loop().await });
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.renew_loop().await });
    }

    pub fn reconfigure(&self, config: DeliveryConfig) {
        self.inner.config.store(Arc::new(config));
    }

    /// Sets how incident keys are made (at start and on a reload).
    pub fn set_incidents(&self, incidents: IncidentsConfig) {
        self.inner.incidents.store(Arc::new(incidents));
    }

    /// Sets relay.yaml's escalation policies (at start and on a reload).
    pub fn set_escalations(&self, policies: Vec<crate::config::escalation::EscalationSpec>) {
        self.set_escalation_part(|p| p.file = policies);
    }

    /// Sets the escalation policies created through the API (at start and
    /// after each change); they follow relay.yaml's (the first policy that
    /// matches an incident wins).
    pub fn set_api_escalations(&self, policies: Vec<crate::config::escalation::EscalationSpec>) {
        self.set_escalation_part(|p| p.api = policies);
    }

    fn set_escalation_part(&self, change: impl FnOnce(&mut EscalationParts)) {
        let mut parts = self
            .inner
            .escalation_parts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        change(&mut parts);
        let all: Vec<_> = parts.file.iter().chain(&parts.api).cloned().collect();
        self.inner.escalations.store(Arc::new(all));
        drop(parts);
        self.inner.escalation_wake.notify_one();
    }

    /// relay.yaml's escalation policies and the API's, apart.
    pub fn escalation_parts(
        &self,
    ) -> (
        Vec<crate::config::escalation::EscalationSpec>,
        Vec<crate::config::escalation::EscalationSpec>,
    ) {
        let parts = self
            .inner
            .escalation_parts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        (parts.file.clone(), parts.api.clone())
    }

    /// The current `incidents:` and `escalations:` of relay.yaml.
    pub fn incident_settings(
        &self,
    ) -> (
        Arc<IncidentsConfig>,
        Arc<Vec<crate::config::escalation::EscalationSpec>>,
    ) {
        (
            self.inner.incidents.load_full(),
            self.inner.escalations.load_full(),
        )
    }

    /// Asks the escalation task to look at the store now (an incident
    /// opened, or the policies changed).
    pub fn poke_escalations(&self) {
        self.inner.escalation_wake.notify_one();
    }

    /// What [`Dispatcher::poke_escalations`] notifies.
    pub fn escalation_wake(&self) -> Arc<Notify> {
        self.inner.escalation_wake.clone()
    }

    /// Offers a fresh delivery; if its lane is full the poller finds it later.
    pub fn offer(&self, job: Job) {
        self.inner.offer(job);
    }

    /// Reserves the ids of the active targets, before their rows are written.
    pub fn reserve(&self, targets: &[store::Target]) -> Reservation {
        let held = targets
            .iter()
            .filter(|t| t.start == store::Start::Due)
            .filter_map(|t| {
                let lane = self.inner.lane(&t.webhook_id);
                let fresh = lane.inflight().insert(t.delivery_id.clone());
                fresh.then(|| (lane, t.delivery_id.clone(), t.webhook_id.clone()))
            })
            .collect();
        Reservation { held }
    }

    /// Holds one existing delivery in its lane (for a resend), unless an
    /// attempt of it is queued or in flight: `None` then. While held, the
    /// poller cannot offer it, so a resend's write and an attempt's record
    /// never overwrite each other.
    pub fn claim(&self, webhook_id: &str, delivery_id: &str) -> Option<Reservation> {
        let lane = self.inner.lane(webhook_id);
        let fresh = lane.inflight().insert(delivery_id.to_owned());
        fresh.then(|| Reservation {
            held: vec![(lane, delivery_id.to_owned(), webhook_id.to_owned())],
        })
    }

    /// Offers a claimed delivery once the resend's write is committed.
    pub fn offer_claimed(&self, mut reservation: Reservation, job: Job) {
        if let Some((lane, _, _)) = reservation.held.pop() {
            self.inner.enqueue(&lane, job);
        }
    }

    /// Offers reserved deliveries of `event` once their rows are committed:
    /// their first attempt needs no re-read.
    /// The jobs of a fan-out share one [`Formatted`]: webhooks with equal
    /// body templates get one rendered body. A lone delivery has nothing to
    /// share, so it gets none (no allocation on the single-webhook path).
    pub fn offer_reserved(&self, event: &Arc<Event>, mut reservation: Reservation) {
        let formatted = (reservation.held.len() > 1).then(|| Arc::new(Formatted::default()));
        for (lane, delivery_id, webhook_id) in std::mem::take(&mut reservation.held) {
            let mut job = Job::reserved(delivery_id, webhook_id, event.clone());
            job.formatted = formatted.clone();
            self.inner.enqueue(&lane, job);
        }
    }

    /// Asks the poller to look at the store now.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Asks the digest task (`digester::Digester`) to look at the
    /// store now: ingest stored digest members.
    pub fn poke_digests(&self) {
        self.inner.digest_wake.notify_one();
    }

    /// What [`Dispatcher::poke_digests`] notifies.
    pub fn digest_wake(&self) -> Arc<Notify> {
        self.inner.digest_wake.clone()
    }

    /// Graceful stop: no new attempt starts from now on; waits until every
    /// attempt in flight is recorded, or `grace` has passed. Returns how
    /// many attempts were still unrecorded then (0 when all finished).
    /// Deliveries not attempted stay due in the store for the next start.
    pub async fn drain(&self, grace: Duration) -> usize {
        let inner = &self.inner;
        inner.stopping.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        let left = loop {
            let recorded = inner.recorded.notified();
            let left = inner.unrecorded.load(Ordering::SeqCst);
            if left == 0 {
                break 0;
            }
            if tokio::time::timeout_at(deadline, recorded).await.is_err() {
                break inner.unrecorded.load(Ordering::SeqCst);
            }
        };
        if inner.store.is_shared() {
            // Deliveries still queued here: another instance may take them
            // now instead of after their lease.
            let lanes: Vec<Arc<Lane>> = lock(&inner.lanes).values().cloned().collect();
            let ids: Vec<String> = lanes
                .iter()
                .flat_map(|l| l.inflight().iter().cloned().collect::<Vec<_>>())
                .collect();
            if let Err(e) = inner.store.renew(ids, Duration::ZERO).await {
                tracing::warn!(error = %e, "cannot release the leases of queued deliveries; other instances take them once the leases expire");
            }
        }
        left
    }

    /// Runs one attempt right now, outside the lanes, and returns its record
    /// (used by the `test` endpoint).
    pub async fn attempt_now(&self, job: Job) -> Result<Attempt, StoreError> {
        let id = job.delivery_id.clone();
        self.inner
            .clone()
            .attempt(job, None)
            .await?
            .ok_or_else(|| StoreError::Conflict(format!("delivery {id} is not due")))
    }
}

impl Inner {
    fn lane(self: &Arc<Self>, webhook_id: &str) -> Arc<Lane> {
        let mut lanes = lock(&self.lanes);
        if let Some(l) = lanes.get(webhook_id) {
            return l.clone();
        }
        let (tx, rx) = mpsc::channel(LANE_CAPACITY);
        let lane = Arc::new(Lane {
            tx,
            inflight: Mutex::new(HashSet::new()),
            starved: AtomicBool::new(false),
        });
        lanes.insert(webhook_id.to_owned(), lane.clone());
        let inner = self.clone();
        let worker_lane = lane.clone();
        tokio::spawn(async move { inner.run_lane(worker_lane, rx).await });
        lane
    }

    fn offer(self: &Arc<Self>, job: Job) {
        let lane = self.lane(&job.webhook_id);
        if !lane.inflight().insert(job.delivery_id.clone()) {
            return;
        }
        self.enqueue(&lane, job);
    }

    /// Queues a job whose id is already in the lane's `inflight`; if the
    /// lane is full the id is freed and the poller finds the row later.
    fn enqueue(&self, lane: &Lane, job: Job) {
        let id = job.delivery_id.clone();
        if lane.tx.try_send(job).is_err() {
            lane.inflight().remove(&id);
            lane.starved.store(true, Ordering::SeqCst);
            if self.store.is_shared() {
                // Leased to this instance by ingest or a claim: give it up
                // so that any instance (this one's poller too) can claim it.
                let store = self.store.clone();
                tokio::spawn(async move {
                    if let Err(e) = store.renew(vec![id], Duration::ZERO).await {
                        tracing::warn!(error = %e, "cannot release a delivery that did not fit its lane; it is claimable once its lease expires");
                    }
                });
            }
        }
    }

    async fn run_lane(self: Arc<Self>, lane: Arc<Lane>, mut rx: mpsc::Receiver<Job>) {
        let slots = self.config.load().concurrency_per_webhook;
        let sending = Arc::new(Semaphore::new(slots));
        let unrecorded = Arc::new(Semaphore::new(slots * UNRECORDED_PER_SLOT));
        while let Some(job) = rx.recv().await {
            let slot = Slot {
                lane: lane.clone(),
                id: job.delivery_id.clone(),
            };
            let (Ok(unrecorded), Ok(sending)) = (
                unrecorded.clone().acquire_owned().await,
                sending.clone().acquire_owned().await,
            ) else {
                return;
            };
            if let Some(until) = self.paused_until() {
                tokio::time::sleep_until(until.into()).await;
            }
            if self.stopping.load(Ordering::SeqCst) {
                // Left due in the store for the next start.
                continue;
            }
            let inner = self.clone();
            let counted = Unrecorded::start(self.clone());
            let lane = lane.clone();
            tokio::spawn(async move {
                let id = job.delivery_id.clone();
                // Boxed: the attempt's future is large, and the task that
                // runs it would be copied whole as it is spawned and polled.
                let result = Box::pin(inner.clone().attempt(job, Some(sending))).await;
                match result {
                    Ok(_) => inner.store_recovered(),
                    Err(e) => {
                        // Not recorded: the id stays held (not offered
                        // again) until the store backoff has passed, so a
                        // store that cannot write does not turn into a
                        // storm of re-sends.
                        let wait = inner.store_failed(&id, &e);
                        tokio::time::sleep(wait).await;
                    }
                }
                drop(slot);
                drop(counted);
                drop(unrecorded);
                if lane.starved.load(Ordering::SeqCst) {
                    inner.wake.notify_one();
                }
            });
        }
    }

    /// The time dispatch resumes after a store failure, if it is paused.
    fn paused_until(&self) -> Option<Instant> {
        lock(&self.trouble)
            .map(|t| t.until)
            .filter(|until| *until > Instant::now())
    }

    /// An attempt could not be recorded: pause dispatch (backoff doubling
    /// from [`STORE_BACKOFF_MIN`]); logs once per pause. Returns the pause.
    fn store_failed(&self, delivery_id: &str, e: &StoreError) -> Duration {
        let mut trouble = lock(&self.trouble);
        let now = Instant::now();
        match *trouble {
            Some(t) if t.until > now => t.until - now,
            previous => {
                let backoff = previous
                    .map(|t| (t.backoff * 2).min(STORE_BACKOFF_MAX))
                    .unwrap_or(STORE_BACKOFF_MIN);
                tracing::error!(
                    delivery = %delivery_id,
                    error = %e,
                    pause_ms = backoff.as_millis() as u64,
                    "the store cannot record attempts; dispatch pauses and the unrecorded attempts will be retried"
                );
                *trouble = Some(StoreTrouble {
                    until: now + backoff,
                    backoff,
                });
                backoff
            }
        }
    }

    fn store_recovered(&self) {
        let mut trouble = lock(&self.trouble);
        if trouble.take().is_some() {
            tracing::info!("the store records attempts again; dispatch resumes");
        }
    }

    async fn poll_loop(self: Arc<Self>) {
        let mut refreshed = Instant::now();
        loop {
            if self.store.is_shared() && refreshed.elapsed() >= BREAKER_REFRESH {
                refreshed = Instant::now();
                self.refresh_breakers().await;
            }
            let webhooks = self.registry.load();
            let idle = self.stopping.load(Ordering::SeqCst) || self.paused_until().is_some();
            // Only webhooks with due work (issue 15: thousands of webhooks
            // must not cost a read each per poll); all of them when the
            // store cannot say.
            let due: Vec<Arc<Webhook>> = if idle {
                vec![]
            } else {
                match self.store.due_webhooks(now_ms()).await {
                    Ok(ids) => ids
                        .iter()
                        .filter_map(|id| webhooks.get(id).cloned())
                        .collect(),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read which webhooks have due deliveries");
                        webhooks.iter().cloned().collect()
                    }
                }
            };
            for w in due {
                if w.breaker.activity() == Activity::Paused {
                    // Its deliveries wait until it is re-enabled.
                    continue;
                }
                let lane = self.lane(&w.id);
                let room = lane.tx.capacity();
                if room == 0 {
                    continue;
                }
                let busy = Busy {
                    count: lane.inflight().len(),
                    contains: {
                        let lane = lane.clone();
                        Arc::new(move |id: &str| lane.inflight().contains(id))
                    },
                };
                let claimed = match self
                    .store
                    .claim_due(&w.id, room, self.store.lease(), busy)
                    .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(webhook = %w.id, error = %e, "cannot read due deliveries");
                        continue;
                    }
                };
                lane.starved.store(claimed.saturated, Ordering::SeqCst);
                if claimed.orphans > 0 {
                    // Due deliveries whose event is gone (pruned while a
                    // replay created them): they can never be sent; the
                    // store ended them as failed.
                    tracing::warn!(webhook = %w.id, count = claimed.orphans, "failed deliveries whose event no longer exists");
                }
                let due = claimed.due;
                // A shared store's claim read the row and leased it in one
                // statement: the offer is current, no re-read needed.
                let leased = self.store.is_shared();
                for d in due {
                    let mut job =
                        Job::new(d.delivery_id, d.webhook_id, d.attempts, Arc::new(d.event));
                    job.current = leased;
                    self.offer(job);
                }
            }
            // Woken early (a lane drained): poll again, but not more often
            // than every MIN_POLL_GAP, so a busy lane does not spin the poller.
            tokio::time::sleep(MIN_POLL_GAP).await;
            let next_retry = *lock(&self.next_retry);
            let wait = next_retry
                .map(|at| at.saturating_duration_since(Instant::now()))
                .map_or(POLL_INTERVAL, |d| d.min(POLL_INTERVAL));
            let _ = tokio::time::timeout(wait, self.wake.notified()).await;
            let mut next = lock(&self.next_retry);
            if next.is_some_and(|at| at <= Instant::now()) {
                *next = None;
            }
        }
    }

    /// Reads back the breaker states of a shared store: another instance
    /// may have tripped a webhook (its failures count for all) or an
    /// operator re-enabled one through another instance's API.
    async fn refresh_breakers(&self) {
        match self.store.load_webhook_states().await {
            Ok(states) => {
                let webhooks = self.registry.load();
                for (id, state) in states {
                    if let Some(w) = webhooks.get(&id)
                        && w.breaker.snapshot() != state
                    {
                        w.breaker.observe(state);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the webhooks' breaker states from the shared store")
            }
        }
    }

    /// Renews the leases of every delivery queued or running here, every
    /// quarter of the lease, so that another instance never takes over a
    /// delivery whose attempt is still going (a no-op on SQLite).
    async fn renew_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.store.lease() / RENEWALS_PER_LEASE);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let lanes: Vec<Arc<Lane>> = lock(&self.lanes).values().cloned().collect();
            let ids: Vec<String> = lanes
                .iter()
                .flat_map(|l| l.inflight().iter().cloned().collect::<Vec<_>>())
                .collect();
            if ids.is_empty() {
                continue;
            }
            if let Err(e) = self.store.renew(ids, self.store.lease()).await {
                tracing::error!(error = %e, "cannot renew the leases of deliveries in flight");
            }
        }
    }

    /// Whether `job` is still the delivery's next attempt. An offer can be
    /// stale (a retry timer and the poller both offering it, or the poller
    /// having read the row just before the previous attempt was recorded);
    /// the row is the truth, and it is read after this job entered
    /// `inflight`, so after any earlier attempt's commit.
    async fn is_current(&self, job: &Job) -> Result<bool, StoreError> {
        self.store.still_due(&job.delivery_id, job.attempts).await
    }

    /// Makes one attempt and records it. `Ok(None)` when the job was stale.
    /// `slot` (the lane's send slot) is freed as soon as the exchange ends.
    /// A delivery's failure is its record's outcome; `Err` means the store
    /// could not read or record it.
    async fn attempt(
        self: Arc<Self>,
        job: Job,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<Option<Attempt>, StoreError> {
        if !job.current && !self.is_current(&job).await? {
            return Ok(None);
        }
        let number = job.attempts + 1;
        let started = Instant::now();
        let webhook = self.registry.load().get(&job.webhook_id).cloned();
        if webhook.is_none() {
            // Removed from relay.yaml by a reload: the delivery stays pending
            // in the store and resumes if the webhook comes back.
            return Ok(None);
        }
        let mut warnings = Vec::new();
        // A stateful destination's state after this attempt, when it changed.
        let mut state_change: Option<Incident> = None;
        let (outcome, webhook) = match webhook {
            None => (
                Outcome::Final(Err(DeliveryError::Config(format!(
                    "webhook {} no longer exists",
                    job.webhook_id
                )))),
                None,
            ),
            Some(w) if w.breaker.activity() == Activity::Paused => {
                drop(slot);
                return self.pause(&job, number).await.map(Some);
            }
            Some(w) if !w.breaker.is_active() => (Outcome::Skipped, Some(w)),
            Some(w) => {
                let mut incident = self.incident_of(&w, &job.event, &mut warnings).await?;
                let result = self
                    .execute(&w, &job, incident.as_mut(), &mut warnings)
                    .await;
                state_change = incident.filter(|i| i.changed).map(|i| i.incident);
                (self.decide(&w, number, result), Some(w))
            }
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        drop(slot);
        let (status, due_at, response, error) = match &outcome {
            Outcome::Final(Ok(resp)) => (Status::Succeeded, None, Some(resp), None),
            Outcome::Final(Err(e)) => (Status::Failed, None, None, Some(e)),
            Outcome::Retry(e, delay) => (
                Status::Retrying,
                Some(now_ms() + delay.as_millis() as i64),
                None,
                Some(e),
            ),
            Outcome::Skipped => (Status::Skipped, None, None, None),
        };
        let (status_code, body) = match (response, error) {
            // Status 0 marks a syslog send: there is no response.
            (Some(r), _) if r.status == 0 => (None, None),
            (Some(r), _) => (Some(r.status), Some(history::clip_body(&r.body))),
            (None, Some(e)) => (e.status_code(), e.response_body().map(history::clip_body)),
            (None, None) => (None, None),
        };
        let created_at_ms = now_ms();
        let record = Attempt {
            id: new_id(),
            delivery_id: job.delivery_id.clone(),
            webhook_id: job.webhook_id.clone(),
            event_id: job.event.id.clone(),
            event_type: job.event.event_type.clone(),
            attempt: number,
            status,
            status_code,
            success: status == Status::Succeeded,
            error: match (&outcome, error) {
                (Outcome::Skipped, _) => Some(AttemptError::held(false)),
                (_, Some(e)) => Some(AttemptError::from(e)),
                _ => None,
            },
            response_body: body,
            duration_ms,
            warnings,
            created_at: crate::event::rfc3339_ms(created_at_ms),
            created_at_ms,
        };
        // Breaker bookkeeping for outcomes that end a delivery. Only the
        // receiver's failures count (DESIGN §9): a failure caused by the
        // event's data, a plugin or the relay fails this delivery alone.
        // The store applies the change to the stored counters (shared by
        // every instance on one database) and answers with the result.
        let threshold = self.config.load().breaker_threshold;
        let change = match (&outcome, &webhook) {
            (Outcome::Final(Ok(_)), Some(w)) => BreakerChange::Success {
                streak: w.breaker.snapshot().failure_count > 0,
            },
            (Outcome::Final(Err(e)), Some(_)) if e.origin() != Origin::Upstream => {
                BreakerChange::None
            }
            (Outcome::Final(Err(e)), Some(_)) if e.disables_webhook() => BreakerChange::Trip,
            (Outcome::Final(Err(_)), Some(_)) => BreakerChange::Failure { threshold },
            _ => BreakerChange::None,
        };
        let catch_all = match status {
            Status::Failed | Status::Skipped => self.catch_all(&job),
            _ => None,
        };
        let stored = self
            .store
            .record_attempt(AttemptRecord {
                catch_all: catch_all.clone(),
                attempt: record.clone(),
                due_at,
                breaker: change,
                // In the same transaction as the attempt: a created ticket's
                // id is never lost once the attempt is recorded.
                destination_state: state_change.map(|i| DestinationState {
                    incident_key: i.key,
                    state: i.state,
                }),
            })
            .await?;
        if catch_all.is_some() {
            // The catch-all delivery, if the store just created it, is due.
            self.wake.notify_one();
        }
        if let Some(w) = &webhook {
            let before = w.breaker.activity();
            match (stored, change) {
                (Some(s), _) => w.breaker.observe(s),
                (None, BreakerChange::Success { .. }) => {
                    w.breaker.record_success();
                }
                _ => {}
            }
            let after = w.breaker.snapshot();
            if before == Activity::Active && after.activity == Activity::Paused {
                tracing::warn!(webhook = %w.id, failures = after.failure_count, "circuit breaker tripped: webhook paused, its deliveries wait until it is re-enabled");
            }
        }
        if let (Outcome::Skipped, Some(w)) = (&outcome, &webhook) {
            self.decided(
                &job.event.id,
                w,
                crate::route::Decision::Skipped,
                &job.delivery_id,
            )
            .await;
        }
        crate::metrics::attempt(status.as_str(), duration_ms);
        // A retry waits in the store (`due_at`), not in memory: the poller
        // offers it when its time has come, looking at that instant if it
        // falls before its next regular look.
        if let Outcome::Retry(_, delay) = outcome {
            // A few ms late rather than early: `due_at` is wall-clock ms.
            let at = Instant::now() + delay + Duration::from_millis(2);
            let mut next = lock(&self.next_retry);
            if next.is_none_or(|n| at < n) {
                *next = Some(at);
            }
        }
        Ok(Some(record))
    }

    /// The catch-all delivery this job's event gets should this attempt
    /// leave no delivery of it pending, retrying or succeeded (the store
    /// decides, in the attempt's transaction); `None` for the catch-all's
    /// own deliveries.
    fn catch_all(&self, job: &Job) -> Option<store::Target> {
        let webhooks = self.registry.load();
        let ca = webhooks.routing.catch_all.as_ref()?;
        if *ca == job.webhook_id {
            return None;
        }
        webhooks.catch_all_target(&job.event.id)
    }

    /// Records that the delivery waits behind its webhook's tripped breaker
    /// (history `paused`; the row keeps its attempts and place in the queue).
    async fn pause(&self, job: &Job, number: u32) -> Result<Attempt, StoreError> {
        let record = history::held(&job.delivery_id, &job.webhook_id, &job.event, number, true);
        self.store
            .record_paused(record.clone(), self.catch_all(job))
            .await?;
        if self.registry.load().routing.catch_all.is_some() {
            self.wake.notify_one();
        }
        if let Some(w) = self.registry.load().get(&job.webhook_id) {
            self.decided(
                &job.event.id,
                w,
                crate::route::Decision::Paused,
                &job.delivery_id,
            )
            .await;
        }
        crate::metrics::attempt(Status::Paused.as_str(), 0);
        Ok(record)
    }

    /// The incident of `event` for `w`'s destination when that destination
    /// is stateful: its key and what the store keeps for it. `None` for
    /// every other webhook (no key rendered, no read).
    async fn incident_of(
        &self,
        w: &Webhook,
        event: &Event,
        warnings: &mut Vec<String>,
    ) -> Result<Option<IncidentRun>, StoreError> {
        let Some(d) = destination_of(w, &self.plugins) else {
            return Ok(None);
        };
        if !self.plugins.is_stateful(&d) {
            return Ok(None);
        }
        let key = crate::incident::key(&self.incidents.load(), event, warnings);
        let state = self.store.load_destination_state(&w.id, &key).await?;
        Ok(Some(IncidentRun {
            incident: Incident { key, state },
            changed: false,
        }))
    }

    /// Records a routing decision dispatch made (`paused`, `skipped`) for
    /// the explain API. After the attempt's own record, in a transaction of
    /// its own: a failure here is logged, and loses only the explanation.
    async fn decided(
        &self,
        event_id: &str,
        w: &Webhook,
        decision: crate::route::Decision,
        delivery_id: &str,
    ) {
        let record = store::DecisionRecord {
            event_id: event_id.to_owned(),
            webhook_id: Some(w.id.clone()),
            webhook_name: Some(w.spec.name.clone()),
            decision: decision.as_str().to_owned(),
            rule: Some("dispatch".into()),
            reference: Some(delivery_id.to_owned()),
            created_at_ms: now_ms(),
        };
        if let Err(e) = self.store.add_decisions(vec![record]).await {
            tracing::warn!(webhook = %w.id, error = %e, "cannot record a routing decision");
        }
    }

    /// `event` with `data.ack_url` (a fresh signed acknowledgement link,
    /// DESIGN §19) when `incidents.ack` is set, `w` asks for it and the
    /// event belongs to an incident (an escalation step's event, or an
    /// event recorded in one); `None` otherwise. Templates read it as
    /// `{{ack_url}}`, plugins as the event's `data.ack_url`. The link is
    /// made for this attempt only: it is never stored.
    async fn with_ack_url(&self, w: &Webhook, event: &Event) -> Option<Event> {
        let incidents = self.incidents.load();
        let ack = incidents.ack.as_ref()?;
        if !event.data.is_object() || !w.wants_ack_url {
            return None;
        }
        let id = match crate::incident::ack::step_incident(&event.data) {
            Some(id) => id.to_owned(),
            None => match self.store.incident_of_event(&event.id).await {
                Ok(id) => id?,
                Err(e) => {
                    tracing::warn!(event = %event.id, error = %e, "cannot find the event's incident; no ack_url");
                    return None;
                }
            },
        };
        let mut linked = event.clone();
        if let Some(data) = linked.data.to_mut().as_object_mut() {
            data.insert(
                "ack_url".into(),
                crate::incident::ack::url(ack, &id, now_ms() / 1000).into(),
            );
        }
        Some(linked)
    }

    async fn execute(
        &self,
        w: &Arc<Webhook>,
        job: &Job,
        mut incident: Option<&mut IncidentRun>,
        warnings: &mut Vec<String>,
    ) -> Result<InResponse, DeliveryError> {
        let none = Incident::default();
        let linked = self.with_ack_url(w, &job.event).await;
        let prepared = prepare_shared(
            w,
            linked.as_ref().unwrap_or(&job.event),
            &job.delivery_id,
            &self.plugins,
            incident.as_deref().map_or(&none, |i| &i.incident),
            warnings,
            // An event with this attempt's own ack link is not shared.
            job.formatted.as_deref().filter(|_| linked.is_none()),
        )
        .await?;
        let requests = match prepared {
            Prepared::Syslog(message) => {
                self.deliverer
                    .send_syslog(
                        w.spec.url.as_str(),
                        &message,
                        Duration::from_millis(w.spec.timeout_ms.0),
                    )
                    .await?;
                return Ok(InResponse {
                    status: 0,
                    headers: vec![],
                    body: Default::default(),
                });
            }
            Prepared::LocalSyslog(message) => {
                crate::deliver::local_syslog::send(
                    w.spec.url.as_str(),
                    message.to_vec(),
                    Duration::from_millis(w.spec.timeout_ms.0),
                )
                .await?;
                return Ok(InResponse {
                    status: 0,
                    headers: vec![],
                    body: Default::default(),
                });
            }
            Prepared::Email(out) => {
                self.deliverer
                    .send_email(
                        w.spec.url.as_str(),
                        &out,
                        w.spec.allow_plaintext,
                        w.spec
                            .email
                            .as_ref()
                            .and_then(|e| e.username.as_ref())
                            .map(|u| u.0.as_str())
                            .zip(w.spec.secret.as_ref().map(|s| s.expose())),
                        Duration::from_millis(w.spec.timeout_ms.0),
                    )
                    .await?;
                return Ok(InResponse {
                    status: 0,
                    headers: vec![],
                    body: Default::default(),
                });
            }
            Prepared::Http(requests) => requests,
        };
        let destination = destination_of(w, &self.plugins);
        let mut last = None;
        for request in requests {
            let auth = w.spec.auth.as_ref().map(|a| &a.oauth2);
            let response = self.deliverer.send_http_as(&w.id, auth, request).await?;
            let host = host_of(w.spec.url.as_str());
            match &destination {
                None if (200..300).contains(&response.status) => {}
                None => {
                    return Err(DeliveryError::Status {
                        host,
                        status: response.status,
                        retry_after: response.retry_after(),
                        body: response.body,
                    });
                }
                Some(d) => {
                    let (outcome, change) = self
                        .plugins
                        .classify_in(
                            d,
                            &w.destination_options,
                            &response,
                            incident.as_deref().map_or(&none, |i| &i.incident),
                        )
                        .await
                        .map_err(|e| e.into_delivery(d))?;
                    // Kept whatever the outcome: a ticket created by an
                    // earlier request of this attempt must not be created
                    // again by its retry.
                    if let Some(i) = incident.as_deref_mut()
                        && change != StateChange::Keep
                    {
                        i.incident.apply(&change);
                        i.changed = true;
                    }
                    let rejected = |reason: String, retryable: bool, retry_after, disable| {
                        DeliveryError::Rejected {
                            host: host.clone(),
                            status: response.status,
                            reason,
                            retryable,
                            retry_after,
                            disable,
                            body: response.body.clone(),
                        }
                    };
                    match outcome {
                        PluginOutcome::Success => {}
                        PluginOutcome::Retry(after) => {
                            return Err(rejected(
                                format!("{d} asks to retry"),
                                true,
                                after.or(response.retry_after()),
                                false,
                            ));
                        }
                        PluginOutcome::Fail(reason) => {
                            return Err(rejected(reason, false, None, false));
                        }
                        PluginOutcome::Disable(reason) => {
                            return Err(rejected(reason, false, None, true));
                        }
                    }
                }
            }
            last = Some(response);
        }
        last.ok_or_else(|| DeliveryError::Config("nothing to send".into()))
    }

    fn decide(
        &self,
        w: &Webhook,
        number: u32,
        result: Result<InResponse, DeliveryError>,
    ) -> Outcome {
        match result {
            Ok(r) => Outcome::Final(Ok(r)),
            Err(e) if e.retryable() && u64::from(number) <= w.spec.retry_count.0 => {
                let cfg = self.config.load();
                let delay = match e.retry_after() {
                    Some(ra) => ra.min(Duration::from_millis(cfg.retry_after_max_ms)),
                    None => backoff(&cfg, number),
                };
                Outcome::Retry(e, delay)
            }
            Err(e) => Outcome::Final(Err(e)),
        }
    }
}

/// A stateful destination's incident during one attempt, and whether a
/// response changed its state (then it is recorded with the attempt).
struct IncidentRun {
    incident: Incident,
    changed: bool,
}

/// Counts one attempt as started and not yet recorded, for
/// [`Dispatcher::drain`].
struct Unrecorded(Arc<Inner>);

impl Unrecorded {
    fn start(inner: Arc<Inner>) -> Unrecorded {
        inner.unrecorded.fetch_add(1, Ordering::SeqCst);
        Unrecorded(inner)
    }
}

impl Drop for Unrecorded {
    fn drop(&mut self) {
        self.0.unrecorded.fetch_sub(1, Ordering::SeqCst);
        self.0.recorded.notify_waiters();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

enum Outcome {
    Final(Result<InResponse, DeliveryError>),
    Retry(DeliveryError, Duration),
    Skipped,
}

/// Delay before retry number `n` (1-based): exponential from
/// `retry_base_ms`, capped at `retry_max_ms`, jittered over the upper half
/// ("equal jitter") so that retries spread out yet each wait is at least as
/// long as half the previous ceiling — gaps grow.
pub fn backoff(cfg: &DeliveryConfig, n: u32) -> Duration {
    let exp = cfg
        .retry_base_ms
        .saturating_mul(1u64 << (n.saturating_sub(1)).min(30));
    let ceiling = exp.min(cfg.retry_max_ms);
    let half = ceiling / 2;
    let jitter = rand::rng().random_range(0..=ceiling - half);
    Duration::from_millis(half + jitter)
}

fn host_of(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::{Guard, Policy};
    use std::sync::atomic::AtomicUsize;

    /// A loopback HTTP receiver answering 200 that counts the requests.
    async fn counting_receiver() -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |_req: http::Request<hyper::body::Incoming>| {
                            counted.fetch_add(1, Ordering::SeqCst);
                            async {
                                Ok::<_, std::convert::Infallible>(http::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        (port, count)
    }

    /// A dispatcher over a real store and one webhook to `port`.
    fn dispatcher(store: &Store, port: u16) -> Dispatcher {
        let spec =
            serde_saphyr::from_str(&format!("name: w\nid: w\nurl: http://127.0.0.1:{port}/\n"))
                .unwrap();
        let registry = Arc::new(Registry::single(spec));
        let deliverer = Deliverer::new(
            Guard::new(vec!["127.0.0.0/8".parse().unwrap()]),
            Policy { allow_http: true },
        );
        let plugins = PluginHost::new(
            crate::plugin::Limits {
                memory_mb: 16,
                timeout_ms: 1000,
                fresh: false,
            },
            None,
        )
        .unwrap();
        Dispatcher::new(
            store.clone(),
            registry,
            deliverer,
            plugins,
            DeliveryConfig::default(),
        )
    }

    fn event(id: &str) -> Event {
        Event {
            id: id.into(),
            event_type: "t".into(),
            time: "2026-01-01T00:00:00Z".into(),
            data: serde_json::json!({}).into(),
        }
    }

    async fn insert(store: &Store, id: &str) -> String {
        let e = event(id);
        let t = store::Target {
            delivery_id: new_id(),
            webhook_id: "w".into(),
            start: store::Start::Due,
        };
        let delivery = t.delivery_id.clone();
        let new = store::NewEvent {
            digests: vec![],
            dedup: None,
            body: store::event_json(&e).unwrap(),
            event: e,
            targets: vec![t],
            held: vec![],
            decisions: vec![],
        };
        store.accept(vec![new]).await.unwrap();
        delivery
    }

    fn sqlite(store: &Store) -> &store::sqlite::SqliteStore {
        match store {
            Store::Sqlite(s) => s,
            Store::Postgres(_) => panic!("these tests run on SQLite"),
        }
    }

    async fn status_of(store: &Store, delivery: &str) -> String {
        store.get_delivery(delivery).await.unwrap().unwrap().status
    }

    async fn wait_status(store: &Store, delivery: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while status_of(store, delivery).await != want {
            assert!(Instant::now() < deadline, "delivery never became {want}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_store_that_cannot_record_pauses_dispatch_instead_of_resending_in_a_loop() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("r.db")).unwrap();
        let (port, received) = counting_receiver().await;
        let delivery = insert(&store, "e1").await;
        // From now on recording an attempt fails at once, as on a full or
        // read-only disk.
        sqlite(&store)
            .execute_for_tests(
                "CREATE TRIGGER full BEFORE INSERT ON attempts
                 BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
            )
            .await
            .unwrap();
        let d = dispatcher(&store, port);
        d.start();
        // Dispatch pauses 1 s, then 2 s: at most three sends in 3.5 s
        // (before, one every 20-200 ms: 17 or more).
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let during = received.load(Ordering::SeqCst);
        assert!(
            (1..=3).contains(&during),
            "{during} sends while the store could not record them"
        );
        assert_eq!(status_of(&store, &delivery).await, "pending");
        // The store recovers: the unrecorded attempt is sent again and
        // recorded.
        sqlite(&store)
            .execute_for_tests("DROP TRIGGER full")
            .await
            .unwrap();
        wait_status(&store, &delivery, "succeeded").await;
        let total = received.load(Ordering::SeqCst);
        assert!(total <= during + 1, "{total} sends after {during}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn deliveries_whose_event_was_pruned_never_wedge_the_webhooks_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("r.db")).unwrap();
        let (port, received) = counting_receiver().await;
        // 600 due deliveries older than everything else, whose event is
        // gone (a replay that raced retention): more than a poll reads.
        let orphans: Vec<String> = (0..600).map(|_| new_id()).collect();
        let e = event("pruned");
        let new = store::NewEvent {
            digests: vec![],
            dedup: None,
            body: store::event_json(&e).unwrap(),
            event: e,
            targets: orphans
                .iter()
                .map(|id| store::Target {
                    delivery_id: id.clone(),
                    webhook_id: "w".into(),
                    start: store::Start::Due,
                })
                .collect(),
            held: vec![],
            decisions: vec![],
        };
        store.accept(vec![new]).await.unwrap();
        sqlite(&store)
            .execute_for_tests(
                "UPDATE deliveries SET due_at = 1 WHERE event_id = 'pruned';
                 DELETE FROM events WHERE id = 'pruned'",
            )
            .await
            .unwrap();
        let delivery = insert(&store, "live").await;
        let d = dispatcher(&store, port);
        d.start();
        wait_status(&store, &delivery, "succeeded").await;
        assert_eq!(received.load(Ordering::SeqCst), 1);
        for id in orphans.iter().step_by(97) {
            assert_eq!(status_of(&store, id).await, "failed");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_attempt_that_panics_frees_its_delivery_for_the_poller() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("r.db")).unwrap();
        let d = dispatcher(&store, 9);
        let lane = d.inner.lane("w");
        lane.inflight().insert("d1".into());
        let slot = Slot {
            lane: lane.clone(),
            id: "d1".into(),
        };
        let task = tokio::spawn(async move {
            let _slot = slot;
            panic!("an attempt panicked");
        });
        assert!(task.await.is_err());
        assert!(!lane.inflight().contains("d1"), "the id was released");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_claimed_delivery_cannot_be_claimed_or_offered_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("r.db")).unwrap();
        let d = dispatcher(&store, 9);
        let held = d.claim("w", "d1").expect("free");
        assert!(d.claim("w", "d1").is_none(), "held by the first claim");
        drop(held);
        assert!(d.claim("w", "d1").is_some(), "released when dropped");
    }

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        let cfg = DeliveryConfig {
            retry_base_ms: 1000,
            retry_max_ms: 8000,
            ..DeliveryConfig::default()
        };
        for _ in 0..200 {
            let d: Vec<u64> = (1..=6)
                .map(|n| backoff(&cfg, n).as_millis() as u64)
                .collect();
            assert!((500..=1000).contains(&d[0]), "{d:?}");
            assert!((1000..=2000).contains(&d[1]), "{d:?}");
            assert!((2000..=4000).contains(&d[2]), "{d:?}");
            assert!(d[3..].iter().all(|x| (4000..=8000).contains(x)), "{d:?}");
        }
    }
}
