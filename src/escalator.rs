//! The task that runs escalation chains (DESIGN §19): it wakes at the
//! earliest due step (read from the store, so also after a restart) or when
//! ingest opened an incident, works out each due step with
//! `incident::escalation::step_at` (pure), stores the step's event and
//! deliveries with the chain's next due time in one transaction
//! (`Storage::run_step`, conditional on the incident still being open at
//! that position), then offers the deliveries to dispatch like any other.
//!
//! Owns: the escalation task. Touches the store, the webhook registry (how
//! a step's deliveries start) and dispatch; what a policy means is
//! `incident::escalation`'s.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::config::escalation::EscalationSpec;
use crate::dispatch::Dispatcher;
use crate::event::{Event, now_ms};
use crate::incident::escalation::{Step, resolved_notice, step_at};
use crate::route::Decision;
use crate::store::{self, Incident, Start, StepRun, Storage, Store, StoreError};
use crate::webhook::{Registry, Webhooks};

/// The task that runs escalation chains (see the module documentation).
#[derive(Clone)]
pub struct Escalator {
    store: Store,
    registry: Arc<Registry>,
    dispatcher: Dispatcher,
    wake: Arc<Notify>,
}

impl Escalator {
    /// Wakes on [`Dispatcher::poke_escalations`].
    pub fn new(store: Store, registry: Arc<Registry>, dispatcher: Dispatcher) -> Escalator {
        Escalator {
            store,
            registry,
            wake: dispatcher.escalation_wake(),
            dispatcher,
        }
    }

    /// Starts the task. Steps a previous run left due fire on their
    /// original time (at once when it has passed).
    pub fn start(&self) {
        let me = self.clone();
        tokio::spawn(async move { me.run().await });
    }

    async fn run(self) {
        let wake = self.wake.clone();
        crate::digester::timer_loop(&wake, "cannot run escalation steps", || self.run_due()).await
    }

    /// Runs every due step; answers the earliest due time of the others.
    pub async fn run_due(&self) -> Result<Option<i64>, StoreError> {
        loop {
            let due = self.store.due_steps(now_ms()).await?;
            crate::metrics::set_incidents_open(due.open);
            if due.due.is_empty() {
                return Ok(due.next_due_ms);
            }
            for (incident, latest) in due.due {
                self.run_step(incident, latest).await?;
            }
        }
    }

    /// Stores one step with its deliveries and offers them to dispatch.
    async fn run_step(&self, incident: Incident, latest: Event) -> Result<(), StoreError> {
        let (_, policies) = self.dispatcher.incident_settings();
        let due_ms = incident.next_due_ms.unwrap_or_else(now_ms);
        let policy: Option<&EscalationSpec> = incident
            .policy
            .as_ref()
            .and_then(|name| policies.iter().find(|p| &p.name == name));
        let step = match policy {
            Some(p) if incident.state == "resolved" => {
                Some(resolved_notice(p, incident.next_step, &latest))
            }
            Some(p) => step_at(p, incident.next_step, due_ms, &latest),
            None => {
                tracing::warn!(incident = %incident.id, policy = ?incident.policy, "the incident's escalation policy is gone from relay.yaml; its chain stops");
                None
            }
        };
        // A chain past its end (the policy got shorter) or without a
        // policy stops: a step with no deliveries and no next.
        let step = step.unwrap_or(Step {
            kind: "step",
            seq: incident.next_step,
            index: 0,
            round: 0,
            notify: vec![],
            skipped: vec![],
            next_due_ms: None,
        });
        let webhooks = self.registry.load();
        let event = step_event(&incident, &latest, &step, now_ms());
        let now = now_ms();
        let mut targets = Vec::new();
        let mut decisions = Vec::new();
        for name in &step.notify {
            let Some(w) = find(&webhooks, name) else {
                tracing::warn!(incident = %incident.id, webhook = %name, "an escalation step names a webhook that is gone; skipped");
                continue;
            };
            if targets.iter().any(|t: &store::Target| t.webhook_id == w.id) {
                continue;
            }
            let start = w.start();
            let t = store::Target {
                delivery_id: crate::event::new_id(),
                webhook_id: w.id.clone(),
                start,
            };
            decisions.push(store::DecisionRecord {
                event_id: event.id.clone(),
                webhook_id: Some(w.id.clone()),
                webhook_name: Some(w.spec.name.clone()),
                decision: match start {
                    Start::Due => Decision::Delivered,
                    Start::Paused => Decision::Paused,
                    Start::Skipped => Decision::Skipped,
                }
                .as_str()
                .to_owned(),
                rule: Some(match step.kind {
                    "resolved" => format!(
                        "escalation {} resolved",
                        incident.policy.as_deref().unwrap_or("")
                    ),
                    _ => format!(
                        "escalation {} step {}",
                        incident.policy.as_deref().unwrap_or(""),
                        step.index + 1
                    ),
                }),
                reference: Some(t.delivery_id.clone()),
                created_at_ms: now,
            });
            targets.push(t);
        }
        let new = store::NewEvent {
            body: store::event_json(&event)?,
            held: crate::history::held_records(&event, &targets),
            targets,
            decisions,
            event,
            digests: vec![],
            dedup: None,
        };
        let reserved = self.dispatcher.reserve(&new.targets);
        let run = StepRun {
            incident_id: incident.id.clone(),
            seq: step.seq,
            step_index: step.index as u32,
            round: step.round,
            due_ms,
            next_due_ms: step.next_due_ms,
            skipped: step.skipped.clone(),
            kind: step.kind,
            event: new,
        };
        let (accepted, new) = self.store.run_step(run).await?;
        if let Some(a) = accepted
            && !a.duplicate
        {
            crate::metrics::escalation_step();
            tracing::info!(incident = %incident.id, step = step.index + 1, round = step.round, deliveries = a.deliveries, "escalation step ran");
            self.dispatcher
                .offer_reserved(&Arc::new(new.event), reserved);
        }
        Ok(())
    }
}

/// A webhook of the registry by name, id or the slug of its name.
fn find<'w>(webhooks: &'w Webhooks, name: &str) -> Option<&'w Arc<crate::webhook::Webhook>> {
    webhooks.get(name).or_else(|| {
        webhooks.iter().find(|w| {
            w.spec.name == name || w.id == name || crate::config::slug(&w.spec.name) == name
        })
    })
}

/// The event a step's deliveries carry: the incident's latest event under a
/// new id, its data with `escalation` (incident id and key, policy, step,
/// round) added, so templates and formatters see it like any event.
fn step_event(incident: &Incident, latest: &Event, step: &Step, now: i64) -> Event {
    let mut data = match &*latest.data {
        Value::Object(m) => Value::Object(m.clone()),
        other => json!({ "data": other }),
    };
    if let Value::Object(m) = &mut data {
        m.insert(
            "escalation".into(),
            json!({
                "incident_id": incident.id,
                "incident_key": incident.key,
                "policy": incident.policy,
                "kind": step.kind,
                "step": step.index + 1,
                "round": step.round,
                "seq": step.seq,
                "event_id": latest.id,
            }),
        );
    }
    Event {
        id: crate::event::new_id(),
        event_type: latest.event_type.clone(),
        time: crate::event::rfc3339_ms(now),
        data: data.into(),
    }
}
