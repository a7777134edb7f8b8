//! The task that closes digest windows (DESIGN §17): it wakes at the
//! earliest window end (read from the store, so also after a restart) or
//! when ingest filled one, turns each due window into a digest event
//! (`route::digest::digest_event`) stored with its delivery in one
//! transaction, and offers that delivery to dispatch like any other.
//!
//! Owns: the window-closing task. Touches the store, the webhook registry
//! (how the digest's delivery starts) and dispatch; the digest's shape and
//! group keys are `route::digest`'s (pure).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::dispatch::Dispatcher;
use crate::event::now_ms;
use crate::route::Decision;
use crate::route::digest::digest_event;
use crate::store::{self, Start, Storage, Store, StoreError};
use crate::webhook::Registry;

/// The longest the digester sleeps without looking at the store (a window
/// opened by another instance on a shared store ends on its own clock).
const IDLE_LOOK: Duration = Duration::from_secs(1);
/// The shortest gap between two looks, so a burst of ingest wake-ups costs
/// one store read per gap.
const MIN_GAP: Duration = Duration::from_millis(20);

/// The task that closes digest windows (see the module documentation).
#[derive(Clone)]
pub struct Digester {
    store: Store,
    registry: Arc<Registry>,
    dispatcher: Dispatcher,
    wake: Arc<Notify>,
}

impl Digester {
    /// Wakes on [`Dispatcher::poke_digests`] (ingest stored members: a
    /// window may be full, or a new one may end before the next look).
    pub fn new(store: Store, registry: Arc<Registry>, dispatcher: Dispatcher) -> Digester {
        Digester {
            store,
            registry,
            wake: dispatcher.digest_wake(),
            dispatcher,
        }
    }

    /// Starts the task. Windows left open or due by a previous run are
    /// closed on their original time (at once when it has passed).
    pub fn start(&self) {
        let me = self.clone();
        tokio::spawn(async move { me.run().await });
    }

    async fn run(self) {
        let wake = self.wake.clone();
        timer_loop(&wake, "cannot close digest windows", || self.close_due()).await
    }

    /// Closes every due window; answers the earliest end of the others.
    pub async fn close_due(&self) -> Result<Option<i64>, StoreError> {
        loop {
            let due = self.store.due_digests(now_ms()).await?;
            if due.due.is_empty() {
                return Ok(due.next_close_ms);
            }
            for id in &due.due {
                self.close(id).await?;
            }
        }
    }

    /// Seals one window and stores its digest event with its delivery.
    async fn close(&self, id: &str) -> Result<(), StoreError> {
        let Some(sealed) = self.store.seal_digest(id).await? else {
            return Ok(());
        };
        let (webhook_id, count) = (sealed.webhook_id.clone(), sealed.members.len());
        let built = digest_event(sealed, now_ms());
        let (event, members) = (built.event, built.members);
        let webhooks = self.registry.load();
        let start = webhooks.get(&webhook_id).map_or(Start::Due, |w| w.start());
        let now = now_ms();
        let record = |webhook_id: &str, decision: Decision, rule: &str, reference: &str| {
            store::DecisionRecord {
                event_id: event.id.clone(),
                webhook_id: Some(webhook_id.to_owned()),
                webhook_name: webhooks.get(webhook_id).map(|w| w.spec.name.clone()),
                decision: decision.as_str().to_owned(),
                rule: Some(rule.to_owned()),
                reference: Some(reference.to_owned()),
                created_at_ms: now,
            }
        };
        let mut targets = vec![store::Target {
            delivery_id: crate::event::new_id(),
            webhook_id: webhook_id.clone(),
            start,
        }];
        let decision = match start {
            Start::Due => Decision::Delivered,
            Start::Paused => Decision::Paused,
            Start::Skipped => Decision::Skipped,
        };
        let mut decisions = vec![record(
            &webhook_id,
            decision,
            "digest",
            &targets[0].delivery_id,
        )];
        if let Some((t, why)) = webhooks.catch_all_at_ingest(&event.id, &targets, false) {
            decisions.push(record(
                &t.webhook_id,
                Decision::CatchAll,
                why,
                &t.delivery_id,
            ));
            targets.push(t);
        }
        let new = store::NewEvent {
            body: built.body,
            held: crate::history::held_records(&event, &targets),
            targets,
            decisions,
            event,
            digests: vec![],
            dedup: None,
        };
        let reserved = self.dispatcher.reserve(&new.targets);
        let (accepted, new) = self.store.finish_digest(id, new, members).await?;
        if let Some(a) = accepted
            && !a.duplicate
        {
            tracing::debug!(digest = %id, webhook = %webhook_id, count, "digest closed");
            self.dispatcher
                .offer_reserved(&Arc::new(new.event), reserved);
        }
        Ok(())
    }
}

/// The loop of a task whose timers are store rows (this one, and
/// `escalator::Escalator`): `look` does what is due and answers the next
/// due time; the task sleeps until then, at most [`IDLE_LOOK`], or until
/// `wake`, and at least [`MIN_GAP`] between looks. A store error is logged
/// (`what`) and the look tried again after [`IDLE_LOOK`].
pub async fn timer_loop<F, Fut>(wake: &Notify, what: &str, mut look: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<i64>, StoreError>>,
{
    loop {
        let wait = match look().await {
            Ok(next) => next
                .map(|at| Duration::from_millis((at - now_ms()).max(0) as u64))
                .map_or(IDLE_LOOK, |d| d.min(IDLE_LOOK)),
            Err(e) => {
                tracing::error!(error = %e, "{what}; trying again shortly");
                IDLE_LOOK
            }
        };
        let _ = tokio::time::timeout(wait, wake.notified()).await;
        tokio::time::sleep(MIN_GAP).await;
    }
}
