//! The router (DESIGN §17): given an event and the webhook set, what
//! happens for each webhook — the `Decision` and the rule behind it — and
//! the deliveries to create.
//!
//! The pipeline, in order:
//! 1. suppression (`routing.suppress`): the event is stored, nothing is
//!    delivered; one decision for the event (`suppressed`, the rule's name);
//! 2. event-level hooks ([`Hooks::event`]: dedup goes here);
//! 3. per candidate webhook (from the [`index::Index`]): `type` (its event
//!    types), `filtered` (its filter: the first field that failed), `muted`
//!    (its mute window now), webhook-level hooks ([`Hooks::webhook`]:
//!    digest goes here), then a delivery: `delivered`, or `paused` /
//!    `skipped` when its breaker or an operator holds it — with the
//!    delivery's id as `ref`.
//!
//! Webhooks the index leaves out are not looked at, so their decision
//! (`type` or `filtered`) is not recorded: [`Table::explain_unrecorded`]
//! works it out when someone asks.
//!
//! Owns: the decision values, the order of the pipeline, the webhook table
//! (persistent maps: cloned in O(1), one webhook added, replaced or
//! removed in O(log n)). Knows webhooks only through [`Routed`]; the store
//! writes what this decides.
//!
//! **Architecture Invariant:** routing is pure: no I/O, no clock of its own
//! (`now_ms` is passed in), nothing stored here.

pub mod digest;
pub mod index;
pub mod matcher;
pub mod mute;
pub mod noise;

use std::sync::Arc;

use serde::Serialize;

use crate::config::{RoutingConfig, WebhookSpec};
use crate::event::Event;
use crate::store::{Activity, DecisionRecord, Start, Target};

/// What happened to an event for one webhook (or for the whole event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// A delivery was created (`ref`: its id).
    Delivered,
    /// The webhook's filter did not match (`rule`: `filter.<field>`).
    Filtered,
    /// The webhook's event types do not name the event's type.
    Type,
    /// A suppression rule matched (`rule`: its name); nothing delivered.
    Suppressed,
    /// A repeat within the dedup window (`ref`: the event it was counted on).
    Deduped,
    /// Held for a digest (`ref`: the digest).
    Digested,
    /// The webhook's mute window was open (`rule`: the window).
    Muted,
    /// The delivery waits behind a tripped breaker (`ref`: its id).
    Paused,
    /// The webhook is disabled by an operator (`ref`: the delivery's id).
    Skipped,
    /// Sent to the catch-all webhook.
    CatchAll,
}

impl Decision {
    pub const ALL: [Decision; 10] = [
        Decision::Delivered,
        Decision::Filtered,
        Decision::Type,
        Decision::Suppressed,
        Decision::Deduped,
        Decision::Digested,
        Decision::Muted,
        Decision::Paused,
        Decision::Skipped,
        Decision::CatchAll,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Delivered => "delivered",
            Decision::Filtered => "filtered",
            Decision::Type => "type",
            Decision::Suppressed => "suppressed",
            Decision::Deduped => "deduped",
            Decision::Digested => "digested",
            Decision::Muted => "muted",
            Decision::Paused => "paused",
            Decision::Skipped => "skipped",
            Decision::CatchAll => "catch_all",
        }
    }

    pub fn parse(s: &str) -> Option<Decision> {
        Decision::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// What the router needs to know of a webhook.
pub trait Routed: Send + Sync {
    fn id(&self) -> &str;
    fn spec(&self) -> &WebhookSpec;
    fn activity(&self) -> Activity;
    fn created_at_ms(&self) -> i64;
}

/// A decision that ends the pipeline for a webhook (or the event) before a
/// delivery: the hooks answer these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub decision: Decision,
    pub rule: Option<String>,
    pub reference: Option<String>,
}

/// Extension points between filter/mute and delivery (dedup, digest:
/// issue 15's second part). Both may keep state (stateful stages keep it
/// in the store) and are asked in pipeline order; `None` lets the event
/// go on.
pub trait Hooks {
    /// After suppression, once per event (dedup).
    fn event(&mut self, _event: &Event, _now_ms: i64) -> Option<Held> {
        None
    }
    /// After type, filter and mute, per webhook (digest).
    fn webhook(&mut self, _webhook: &dyn Routed, _event: &Event, _now_ms: i64) -> Option<Held> {
        None
    }
}

/// No dedup, no digest.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// What routing an event decided: the deliveries to create and every
/// decision to record with them.
#[derive(Debug, Default)]
pub struct Plan {
    pub targets: Vec<Target>,
    pub decisions: Vec<DecisionRecord>,
}

/// The webhook set as the router sees it. Cloning is O(1).
pub struct Table<W> {
    by_id: imbl::HashMap<Arc<str>, Arc<W>>,
    index: index::Index,
    default_types: Option<Arc<[String]>>,
    routing: Arc<RoutingConfig>,
}

impl<W> Clone for Table<W> {
    fn clone(&self) -> Self {
        Table {
            by_id: self.by_id.clone(),
            index: self.index.clone(),
            default_types: self.default_types.clone(),
            routing: self.routing.clone(),
        }
    }
}

impl<W: Routed> Table<W> {
    pub fn new(default_types: Option<Vec<String>>, routing: RoutingConfig) -> Table<W> {
        Table {
            by_id: imbl::HashMap::new(),
            index: index::Index::default(),
            default_types: default_types.map(Arc::from),
            routing: Arc::new(routing),
        }
    }

    pub fn default_types(&self) -> Option<&[String]> {
        self.default_types.as_deref()
    }

    pub fn routing(&self) -> &RoutingConfig {
        &self.routing
    }

    /// Adds `w`, or replaces the webhook with its id.
    pub fn insert(&mut self, w: Arc<W>) {
        let id: Arc<str> = w.id().into();
        let key = index::Key::of(w.spec(), self.default_types());
        self.index.insert(id.clone(), key);
        self.by_id.insert(id, w);
    }

    pub fn remove(&mut self, id: &str) -> Option<Arc<W>> {
        let id: Arc<str> = id.into();
        self.index.remove(&id);
        self.by_id.remove(&id)
    }

    pub fn get(&self, id: &str) -> Option<&Arc<W>> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every webhook, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<W>> {
        self.by_id.values()
    }

    /// Webhooks that could want `event` (see [`index`]), by id.
    fn candidates(&self, event: &Event) -> Vec<&Arc<W>> {
        self.index
            .candidates(event)
            .iter()
            .filter_map(|id| self.by_id.get(id))
            .collect()
    }

    /// Whether `w`'s event types name the event's type.
    fn type_ok(&self, w: &W, event: &Event) -> bool {
        match w.spec().event_types.as_deref().or(self.default_types()) {
            None => true,
            Some(list) => list.iter().any(|t| t == "*" || *t == event.event_type),
        }
    }

    /// Type and filter: `None` when `w` wants the event, else the decision
    /// and rule that say why not.
    fn selects(&self, w: &W, event: &Event) -> Option<(Decision, Option<String>)> {
        if !self.type_ok(w, event) {
            return Some((Decision::Type, Some("event_types".into())));
        }
        let filter = w.spec().filter.as_ref()?;
        matcher::failing_field(filter, event)
            .map(|field| (Decision::Filtered, Some(format!("filter.{field}"))))
    }

    /// Routes one event (the pipeline of the module documentation).
    pub fn plan(&self, event: &Event, now_ms: i64, hooks: &mut dyn Hooks) -> Plan {
        let record = |w: Option<&W>, held: Held| DecisionRecord {
            event_id: event.id.clone(),
            webhook_id: w.map(|w| w.id().to_owned()),
            webhook_name: w.map(|w| w.spec().name.clone()),
            decision: held.decision.as_str().to_owned(),
            rule: held.rule,
            reference: held.reference,
            created_at_ms: now_ms,
        };
        let mut plan = Plan::default();
        if let Some(rule) = self
            .routing
            .suppress
            .iter()
            .find(|r| matcher::matches(&r.matcher, event))
        {
            plan.decisions.push(record(
                None,
                Held {
                    decision: Decision::Suppressed,
                    rule: Some(rule.name.clone()),
                    reference: None,
                },
            ));
            return plan;
        }
        if let Some(held) = hooks.event(event, now_ms) {
            plan.decisions.push(record(None, held));
            return plan;
        }
        for w in self.candidates(event) {
            let w: &W = w;
            if let Some((decision, rule)) = self.selects(w, event) {
                plan.decisions.push(record(
                    Some(w),
                    Held {
                        decision,
                        rule,
                        reference: None,
                    },
                ));
                continue;
            }
            if let Some(m) = &w.spec().mute
                && mute::is_muted(m, now_ms)
            {
                plan.decisions.push(record(
                    Some(w),
                    Held {
                        decision: Decision::Muted,
                        rule: Some(mute::describe(m)),
                        reference: None,
                    },
                ));
                continue;
            }
            if let Some(held) = hooks.webhook(w, event, now_ms) {
                plan.decisions.push(record(Some(w), held));
                continue;
            }
            let (start, decision) = match w.activity() {
                Activity::Active => (Start::Due, Decision::Delivered),
                Activity::Paused => (Start::Paused, Decision::Paused),
                Activity::Disabled(_) => (Start::Skipped, Decision::Skipped),
            };
            let delivery_id = crate::event::new_id();
            plan.decisions.push(record(
                Some(w),
                Held {
                    decision,
                    rule: None,
                    reference: Some(delivery_id.clone()),
                },
            ));
            plan.targets.push(Target {
                delivery_id,
                webhook_id: w.id().to_owned(),
                start,
            });
        }
        plan
    }

    /// The webhooks that want `event` by type and filter alone (a replay:
    /// an operator's request ignores suppression and mute), each with a
    /// new delivery.
    pub fn targets(&self, event: &Event) -> Vec<Target> {
        self.candidates(event)
            .into_iter()
            .filter(|w| self.selects(w, event).is_none())
            .map(|w| Target {
                delivery_id: crate::event::new_id(),
                webhook_id: w.id().to_owned(),
                start: match w.activity() {
                    Activity::Active => Start::Due,
                    Activity::Paused => Start::Paused,
                    Activity::Disabled(_) => Start::Skipped,
                },
            })
            .collect()
    }

    /// For an explanation: the decisions that were not recorded because
    /// the index left those webhooks out (`type` or `filtered`, worked out
    /// now against the current webhooks). Skips webhooks with a recorded
    /// decision, webhooks created after `received_ms`, and everything when
    /// the event was decided as a whole (suppressed, deduped).
    pub fn explain_unrecorded(
        &self,
        event: &Event,
        recorded: &[DecisionRecord],
        received_ms: i64,
    ) -> Vec<DecisionRecord> {
        if recorded.iter().any(|d| d.webhook_id.is_none()) {
            return vec![];
        }
        let known: std::collections::HashSet<&str> = recorded
            .iter()
            .filter_map(|d| d.webhook_id.as_deref())
            .collect();
        let mut out: Vec<DecisionRecord> = self
            .iter()
            .filter(|w| !known.contains(w.id()) && w.created_at_ms() <= received_ms)
            .filter_map(|w| {
                let (decision, rule) = self.selects(w, event)?;
                Some(DecisionRecord {
                    event_id: event.id.clone(),
                    webhook_id: Some(w.id().to_owned()),
                    webhook_name: Some(w.spec().name.clone()),
                    decision: decision.as_str().to_owned(),
                    rule,
                    reference: None,
                    created_at_ms: received_ms,
                })
            })
            .collect();
        out.sort_by(|a, b| a.webhook_id.cmp(&b.webhook_id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct W {
        id: String,
        spec: WebhookSpec,
        activity: Activity,
    }

    impl Routed for W {
        fn id(&self) -> &str {
            &self.id
        }
        fn spec(&self) -> &WebhookSpec {
            &self.spec
        }
        fn activity(&self) -> Activity {
            self.activity
        }
        fn created_at_ms(&self) -> i64 {
            0
        }
    }

    fn table(routing: &str, hooks: &[(&str, &str, Activity)]) -> Table<W> {
        let mut t = Table::new(None, serde_saphyr::from_str(routing).unwrap());
        for (id, extra, activity) in hooks {
            t.insert(Arc::new(W {
                id: (*id).into(),
                spec: serde_saphyr::from_str(&format!(
                    "name: {id}\nurl: https://x.example\n{extra}"
                ))
                .unwrap(),
                activity: *activity,
            }));
        }
        t
    }

    fn ev(id: &str, data: serde_json::Value) -> Event {
        Event {
            id: id.into(),
            event_type: "finding".into(),
            time: "2026-01-01T00:00:00Z".into(),
            data: data.into(),
        }
    }

    /// A decision as (webhook, decision, rule, has a ref).
    type Row = (Option<String>, String, Option<String>, bool);

    /// (webhook, decision, rule, has a ref) per decision, and the targets.
    fn check(t: &Table<W>, e: &Event, hooks: &mut dyn Hooks) -> (Vec<Row>, Vec<(String, Start)>) {
        let plan = t.plan(e, 0, hooks);
        let d = plan
            .decisions
            .iter()
            .map(|d| {
                (
                    d.webhook_id.clone(),
                    d.decision.clone(),
                    d.rule.clone(),
                    d.reference.is_some(),
                )
            })
            .collect();
        let targets = plan
            .targets
            .iter()
            .map(|t| (t.webhook_id.clone(), t.start))
            .collect();
        (d, targets)
    }

    /// Digests webhook `b`'s events and dedups event `dup`.
    struct Fake;
    impl Hooks for Fake {
        fn event(&mut self, event: &Event, _now: i64) -> Option<Held> {
            (event.id == "dup").then(|| Held {
                decision: Decision::Deduped,
                rule: Some("dedup".into()),
                reference: Some("first".into()),
            })
        }
        fn webhook(&mut self, w: &dyn Routed, _e: &Event, _now: i64) -> Option<Held> {
            (w.id() == "b").then(|| Held {
                decision: Decision::Digested,
                rule: None,
                reference: Some("digest-1".into()),
            })
        }
    }

    #[test]
    fn the_pipeline_decides_suppress_type_filter_mute_hooks_then_delivery_by_breaker_state() {
        let t = table(
            "suppress: [{name: quiet, match: {noise: true}}]\n",
            &[
                ("a", "", Activity::Active),
                ("b", "", Activity::Active),
                ("c", "event_types: [other]\n", Activity::Active),
                (
                    "d",
                    "filter: {severity: {at_least: high}}\n",
                    Activity::Active,
                ),
                ("e", "mute: {times: ['00:00-00:00']}\n", Activity::Active),
                ("f", "", Activity::Paused),
                ("g", "", Activity::Disabled(crate::store::Operator::Api)),
            ],
        );
        let (d, targets) = check(&t, &ev("x", json!({"severity": "low"})), &mut Fake);
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            d,
            [
                (s("a"), s("delivered").unwrap(), None, true),
                (s("b"), s("digested").unwrap(), None, true),
                (s("d"), s("filtered").unwrap(), s("filter.severity"), false),
                (
                    s("e"),
                    s("muted").unwrap(),
                    s("mute every day 00:00-00:00 UTC"),
                    false
                ),
                (s("f"), s("paused").unwrap(), None, true),
                (s("g"), s("skipped").unwrap(), None, true),
            ]
        );
        assert_eq!(
            targets,
            [
                ("a".into(), Start::Due),
                ("f".into(), Start::Paused),
                ("g".into(), Start::Skipped)
            ]
        );
        // c's types left it out of the index: not decided, explained on request.
        let e = ev("x", json!({"severity": "low"}));
        let recorded = t.plan(&e, 0, &mut Fake).decisions;
        let worked_out = t.explain_unrecorded(&e, &recorded, 0);
        assert_eq!(worked_out.len(), 1, "{worked_out:?}");
        assert_eq!(
            (
                worked_out[0].webhook_id.as_deref(),
                worked_out[0].decision.as_str(),
                worked_out[0].rule.as_deref()
            ),
            (Some("c"), "type", Some("event_types"))
        );
        let (d, targets) = check(&t, &ev("n", json!({"noise": true})), &mut Fake);
        assert_eq!(d, [(None, s("suppressed").unwrap(), s("quiet"), false)]);
        assert!(targets.is_empty());
        let (d, targets) = check(&t, &ev("dup", json!({})), &mut Fake);
        assert_eq!(d, [(None, s("deduped").unwrap(), s("dedup"), true)]);
        assert!(targets.is_empty());
        let (_, targets) = check(&t, &ev("x", json!({})), &mut NoHooks);
        assert_eq!(
            targets.len(),
            4,
            "without hooks b is delivered too: {targets:?}"
        );
    }

    #[test]
    fn every_decision_round_trips_through_its_name() {
        for d in Decision::ALL {
            assert_eq!(Decision::parse(d.as_str()), Some(d));
            assert_eq!(serde_json::to_value(d).unwrap(), json!(d.as_str()));
        }
        assert_eq!(Decision::parse("maybe"), None);
    }
}
