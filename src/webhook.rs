//! The live set of webhooks: specs compiled for delivery, which events each
//! one wants, and each webhook's circuit-breaker state.
//!
//! Owns: the registry (relay.yaml's and the API's webhooks, compiled; one
//! webhook changed at a time for the API) and the in-memory breaker state.
//! Which webhooks an event goes to is `crate::route`'s (the table and its
//! index live in each snapshot). The store persists breaker state; this
//! module never touches SQL itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::{RoutingConfig, WebhookSpec};
use crate::event::Event;
use crate::route::{Hooks, Plan, Routed, Table};
use crate::store::{Activity, Operator, Start, Target, WebhookState};
use crate::template::Template;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Config,
    Api,
}

/// Breaker state shared by every version of one webhook.
///
/// DESIGN §9: only failures the receiver caused count; a tripped breaker
/// *pauses* the webhook (its deliveries wait and go out, oldest first, once
/// it is re-enabled); an operator's disable (relay.yaml or the API) makes
/// dispatch record its deliveries as skipped.
#[derive(Debug)]
pub struct Breaker {
    activity: AtomicU8,
    failures: AtomicU32,
}

impl Breaker {
    pub fn new(s: WebhookState) -> Breaker {
        Breaker {
            activity: AtomicU8::new(s.activity.code()),
            failures: AtomicU32::new(s.failure_count),
        }
    }
    pub fn snapshot(&self) -> WebhookState {
        WebhookState {
            activity: self.activity(),
            failure_count: self.failures.load(Ordering::SeqCst),
        }
    }
    pub fn activity(&self) -> Activity {
        Activity::from_code(self.activity.load(Ordering::SeqCst))
    }
    pub fn is_active(&self) -> bool {
        self.activity() == Activity::Active
    }
    /// Takes the state the store answered with after it applied an
    /// attempt's breaker change (the stored counters are the truth when
    /// several instances share a database).
    pub fn observe(&self, s: WebhookState) {
        self.failures.store(s.failure_count, Ordering::SeqCst);
        self.activity.store(s.activity.code(), Ordering::SeqCst);
    }
    /// A delivery succeeded: the streak of failures ends. `None` when there
    /// was no streak (nothing to store).
    pub fn record_success(&self) -> Option<WebhookState> {
        (self.failures.swap(0, Ordering::SeqCst) > 0).then(|| self.snapshot())
    }
    /// A delivery failed for good because of the receiver. Trips (pauses the
    /// webhook) after `threshold` in a row (0 = never). Failures caused by
    /// the event's data or by the relay must not be recorded here.
    pub fn record_failure(&self, threshold: u32) -> WebhookState {
        let n = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
        if threshold > 0 && n >= threshold {
            self.trip();
        }
        self.snapshot()
    }
    /// The receiver said it is gone (410, or a destination plugin's
    /// `disable`): pause now.
    pub fn deactivate(&self) -> WebhookState {
        self.trip();
        self.snapshot()
    }
    /// Active → paused; an operator's disable stays as it is.
    fn trip(&self) {
        let _ = self.activity.compare_exchange(
            Activity::Active.code(),
            Activity::Paused.code(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
    /// An operator's decision (API or relay.yaml). Re-enabling resets the
    /// failure counter and ends a pause.
    pub fn set_active(&self, active: bool, by: Operator) -> WebhookState {
        if active {
            self.failures.store(0, Ordering::SeqCst);
            self.activity
                .store(Activity::Active.code(), Ordering::SeqCst);
        } else {
            self.activity
                .store(Activity::Disabled(by).code(), Ordering::SeqCst);
        }
        self.snapshot()
    }
    /// Applies relay.yaml's `is_active` for a webhook of the file: `false`
    /// always disables it; `true` ends only a disable the file itself made
    /// (a tripped breaker or the API's disable stand until re-enabled).
    /// `Some` when the state changed (to be stored).
    fn apply_file(&self, is_active: bool) -> Option<WebhookState> {
        let current = self.activity();
        match (is_active, current) {
            (false, Activity::Disabled(Operator::File)) => None,
            (false, _) => Some(self.set_active(false, Operator::File)),
            (true, Activity::Disabled(Operator::File)) => {
                Some(self.set_active(true, Operator::File))
            }
            (true, _) => None,
        }
    }
}

/// A webhook compiled for delivery.
#[derive(Debug)]
pub struct Webhook {
    pub id: String,
    pub spec: WebhookSpec,
    pub source: Source,
    /// Shared (`Arc`) so that `format::Formatted` keeps it cheaply.
    pub template: Option<Arc<Template>>,
    /// `options` as JSON text, handed to the formatter plugin.
    pub format_options: String,
    /// `destination_options` as JSON text, handed to the destination plugin.
    pub destination_options: String,
    /// Whether the webhook asks for `{{ack_url}}` (`incident::ack::wanted`,
    /// which reads the whole spec: once here, not at every attempt).
    pub wants_ack_url: bool,
    pub breaker: Arc<Breaker>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Webhook {
    /// Whether this webhook wants `event` by type and filter (replay and
    /// tests; ingest routes through [`Webhooks::plan`]).
    pub fn wants(&self, event: &Event, default_types: Option<&[String]>) -> bool {
        let types = self.spec.event_types.as_deref().or(default_types);
        let type_ok = match types {
            None => true,
            Some(list) => list.iter().any(|t| t == "*" || *t == event.event_type),
        };
        type_ok
            && self
                .spec
                .filter
                .as_ref()
                .is_none_or(|f| crate::route::matcher::matches(f, event))
    }

    /// How a new delivery of this webhook starts, from its breaker.
    pub fn start(&self) -> Start {
        match self.breaker.activity() {
            Activity::Active => Start::Due,
            Activity::Paused => Start::Paused,
            Activity::Disabled(_) => Start::Skipped,
        }
    }
}

impl Routed for Webhook {
    fn id(&self) -> &str {
        &self.id
    }
    fn spec(&self) -> &WebhookSpec {
        &self.spec
    }
    fn activity(&self) -> Activity {
        self.breaker.activity()
    }
    fn created_at_ms(&self) -> i64 {
        self.created_at_ms
    }
}

/// An immutable snapshot of all webhooks, with the routing index and
/// rules (`route::Table`). Cloning is O(1), so one webhook changes without
/// rebuilding the rest.
#[derive(Clone)]
pub struct Webhooks {
    table: Table<Webhook>,
    /// `routing.dedup` and `routing.catch_all` compiled (noise control).
    pub routing: Arc<crate::route::noise::Settings>,
}

impl Default for Webhooks {
    fn default() -> Self {
        Webhooks {
            table: Table::new(None, RoutingConfig::default()),
            routing: Arc::default(),
        }
    }
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("len", &self.table.len())
            .finish()
    }
}

impl Webhooks {
    pub fn get(&self, id: &str) -> Option<&Arc<Webhook>> {
        self.table.get(id)
    }

    /// The `routing.catch_all` delivery of `event_id`, starting as its
    /// webhook's state allows; `None` without a catch-all (or when it is
    /// gone).
    pub fn catch_all_target(&self, event_id: &str) -> Option<Target> {
        let id = self.routing.catch_all.as_ref()?;
        let w = self.get(id)?;
        Some(Target {
            delivery_id: crate::store::catch_all_delivery_id(event_id),
            webhook_id: w.id.clone(),
            start: w.start(),
        })
    }

    /// At ingest: the catch-all target, and why, when no webhook wanted
    /// the event (no target, and `quiet` is false: no digest took it and no
    /// mute window held it) or every target starts held (its webhook
    /// paused or disabled). `None` when the catch-all is among the targets.
    pub fn catch_all_at_ingest(
        &self,
        event_id: &str,
        targets: &[Target],
        quiet: bool,
    ) -> Option<(Target, &'static str)> {
        let id = self.routing.catch_all.as_ref()?;
        if targets.iter().any(|t| &t.webhook_id == id) {
            return None;
        }
        let why = if targets.is_empty() {
            if quiet {
                return None;
            }
            "no webhook wanted the event"
        } else if targets.iter().all(|t| t.start != Start::Due) {
            "every delivery is held (paused or disabled)"
        } else {
            return None;
        };
        Some((self.catch_all_target(event_id)?, why))
    }

    /// Every webhook, newest first (ties by id).
    pub fn list(&self) -> Vec<Arc<Webhook>> {
        let mut list: Vec<Arc<Webhook>> = self.table.iter().cloned().collect();
        list.sort_by(|a, b| {
            b.created_at_ms
                .cmp(&a.created_at_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        list
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Every webhook, in no particular order (no allocation).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Webhook>> {
        self.table.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn default_types(&self) -> Option<&[String]> {
        self.table.default_types()
    }

    /// Routes an event (DESIGN §17): its deliveries and decisions.
    pub fn plan(&self, event: &Event, now_ms: i64, hooks: &mut dyn Hooks) -> Plan {
        self.table.plan(event, now_ms, hooks)
    }

    /// The delivery targets of an event by type and filter alone (replay),
    /// each with a new delivery id.
    pub fn targets(&self, event: &Event) -> Vec<Target> {
        self.table.targets(event)
    }

    /// The routing table (explanations).
    pub fn table(&self) -> &Table<Webhook> {
        &self.table
    }
}

/// Input to a registry rebuild.
pub struct Declared {
    pub spec: WebhookSpec,
    pub source: Source,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// The current webhook set, swapped atomically on changes.
pub struct Registry {
    current: ArcSwap<Webhooks>,
    breakers: Mutex<HashMap<String, Arc<Breaker>>>,
    /// When each webhook of relay.yaml was first loaded (its `created_at`),
    /// as stored.
    first_seen: Mutex<HashMap<String, i64>>,
    /// relay.yaml's `is_active` per webhook as last applied: the file's
    /// value is applied when it changes (and at start), so that an
    /// unrelated rebuild never undoes an API re-enable.
    file_active: Mutex<HashMap<String, bool>>,
}

/// What a registry rebuild changed that must be stored.
#[derive(Debug, Default)]
pub struct Rebuilt {
    /// Breaker states relay.yaml's `is_active` changed.
    pub states: Vec<(String, WebhookState)>,
    /// Webhooks of relay.yaml loaded for the first time, with that time.
    pub first_seen: Vec<(String, i64)>,
}

impl Registry {
    /// `states` are the persisted breaker states, `first_seen` the stored
    /// first-load times of relay.yaml's webhooks.
    pub fn new(states: Vec<(String, WebhookState)>, first_seen: Vec<(String, i64)>) -> Registry {
        let breakers = states
            .into_iter()
            .map(|(id, s)| (id, Arc::new(Breaker::new(s))))
            .collect();
        Registry {
            current: ArcSwap::from_pointee(Webhooks::default()),
            breakers: Mutex::new(breakers),
            first_seen: Mutex::new(first_seen.into_iter().collect()),
            file_active: Mutex::new(HashMap::new()),
        }
    }

    /// A registry of one webhook with no stored state (`relay render`,
    /// tests).
    pub fn single(spec: WebhookSpec) -> Registry {
        let registry = Registry::new(vec![], vec![]);
        registry.replace(
            vec![Declared {
                spec,
                source: Source::Config,
                created_at_ms: 0,
                updated_at_ms: 0,
            }],
            None,
            RoutingConfig::default(),
        );
        registry
    }

    pub fn load(&self) -> Arc<Webhooks> {
        self.current.load_full()
    }

    /// The webhook's breaker; a new one starts active, or disabled by the
    /// API when `initial_active` is false.
    pub fn breaker(&self, id: &str, initial_active: bool) -> Arc<Breaker> {
        let mut map = lock(&self.breakers);
        map.entry(id.to_owned())
            .or_insert_with(|| {
                Arc::new(Breaker::new(WebhookState {
                    activity: if initial_active {
                        Activity::Active
                    } else {
                        Activity::Disabled(Operator::Api)
                    },
                    failure_count: 0,
                }))
            })
            .clone()
    }

    /// Rebuilds the set from the file's webhooks and the API's, and stores
    /// what the file changed: `is_active` from relay.yaml (see
    /// [`Breaker::apply_file`]) and the first-load time of new file webhooks.
    pub async fn rebuild(
        &self,
        cfg: &crate::config::Config,
        api: Vec<crate::store::StoredWebhook>,
        store: &crate::store::Store,
    ) -> Result<(), crate::store::StoreError> {
        let changes = self.rebuild_in_memory(cfg, api);
        if changes.states.is_empty() && changes.first_seen.is_empty() {
            return Ok(());
        }
        use crate::store::Storage;
        store.save_rebuilt(changes.states, changes.first_seen).await
    }

    /// [`Registry::rebuild`] without the store: returns what to store.
    fn rebuild_in_memory(
        &self,
        cfg: &crate::config::Config,
        api: Vec<crate::store::StoredWebhook>,
    ) -> Rebuilt {
        let loaded_at = crate::event::now_ms();
        let mut changes = Rebuilt::default();
        let mut declared: Vec<Declared> = {
            let mut first_seen = lock(&self.first_seen);
            let mut file_active = lock(&self.file_active);
            cfg.file_webhooks()
                .into_iter()
                .enumerate()
                .map(|(i, spec)| {
                    let id = spec.id.clone().unwrap_or_default();
                    // First load: stamped one ms apart to keep file order.
                    let created = *first_seen.entry(id.clone()).or_insert_with(|| {
                        changes.first_seen.push((id.clone(), loaded_at + i as i64));
                        loaded_at + i as i64
                    });
                    let changed = file_active.insert(id.clone(), spec.is_active);
                    if changed != Some(spec.is_active)
                        && let Some(s) = self.breaker(&id, true).apply_file(spec.is_active)
                    {
                        changes.states.push((id, s));
                    }
                    Declared {
                        spec,
                        source: Source::Config,
                        created_at_ms: created,
                        updated_at_ms: created,
                    }
                })
                .collect()
        };
        declared.extend(api.into_iter().map(|w| Declared {
            spec: w.spec,
            source: Source::Api,
            created_at_ms: w.created_at_ms,
            updated_at_ms: w.updated_at_ms,
        }));
        self.replace(
            declared,
            cfg.defaults.event_types.clone(),
            cfg.routing.clone(),
        );
        changes
    }

    /// Replaces the whole set (start, relay.yaml reload). Breaker state
    /// survives for ids that remain.
    pub fn replace(
        &self,
        declared: Vec<Declared>,
        default_types: Option<Vec<String>>,
        routing: RoutingConfig,
    ) {
        let noise = crate::route::noise::Settings::new(
            &routing,
            declared
                .iter()
                .filter(|d| d.source == Source::Config)
                .map(|d| {
                    (
                        d.spec.name.as_str(),
                        d.spec.id.as_deref().unwrap_or_default(),
                    )
                }),
        );
        let mut table = Table::new(default_types, routing);
        for d in declared {
            table.insert(self.compile(d));
        }
        self.current.store(Arc::new(Webhooks {
            table,
            routing: Arc::new(noise),
        }));
    }

    fn compile(&self, d: Declared) -> Arc<Webhook> {
        let id = d.spec.id.clone().unwrap_or_default();
        Arc::new(Webhook {
            breaker: self.breaker(&id, d.spec.is_active),
            template: d
                .spec
                .body
                .as_ref()
                .map(|b| Arc::new(Template::compile(&b.0))),
            format_options: d.spec.format_options_json(),
            destination_options: d.spec.destination_options_json(),
            wants_ack_url: crate::incident::ack::wanted(&d.spec),
            id,
            spec: d.spec,
            source: d.source,
            created_at_ms: d.created_at_ms,
            updated_at_ms: d.updated_at_ms,
        })
    }

    /// Adds or replaces one webhook (an API create or update): the others
    /// are neither re-read nor recompiled, O(log n) in their number. The
    /// caller serialises changes (`AppState::rebuild`).
    pub fn upsert(&self, d: Declared) {
        let mut next = Webhooks::clone(&self.current.load());
        next.table.insert(self.compile(d));
        self.current.store(Arc::new(next));
    }

    /// Removes one webhook (an API delete) and forgets its breaker.
    pub fn remove(&self, id: &str) {
        let mut next = Webhooks::clone(&self.current.load());
        next.table.remove(id);
        self.current.store(Arc::new(next));
        lock(&self.breakers).remove(id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn spec(yaml: &str) -> WebhookSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn webhook(yaml: &str) -> Webhook {
        Webhook {
            id: "w".into(),
            spec: spec(yaml),
            source: Source::Config,
            template: None,
            format_options: "{}".into(),
            destination_options: "{}".into(),
            wants_ack_url: false,
            breaker: Arc::new(Breaker::new(WebhookState {
                activity: Activity::Active,
                failure_count: 0,
            })),
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn event(t: &str, data: Value) -> Event {
        Event {
            id: "e".into(),
            event_type: t.into(),
            time: "2026-01-01T00:00:00Z".into(),
            data: data.into(),
        }
    }

    #[test]
    fn event_types_match_exactly_or_by_wildcard() {
        let w = webhook("name: a\nurl: https://x.example\nevent_types: [critical_finding]\n");
        assert!(w.wants(&event("critical_finding", json!({})), None));
        assert!(!w.wants(&event("finding_added", json!({})), None));
        let all = webhook("name: a\nurl: https://x.example\nevent_types: ['*']\n");
        assert!(all.wants(&event("anything", json!({})), None));
        let dflt = webhook("name: a\nurl: https://x.example\n");
        let d = vec!["x".to_string()];
        assert!(!dflt.wants(&event("y", json!({})), Some(&d)));
        assert!(dflt.wants(&event("y", json!({})), None));
    }

    #[test]
    fn filters_match_values_case_insensitively_and_by_path() {
        let w = webhook(
            "name: a\nurl: https://x.example\nfilter: {severity: [high, critical], finding.cvss: 9}\n",
        );
        assert!(w.wants(
            &event("t", json!({"severity": "Critical", "finding": {"cvss": 9}})),
            None
        ));
        assert!(!w.wants(
            &event("t", json!({"severity": "low", "finding": {"cvss": 9}})),
            None
        ));
        assert!(
            !w.wants(&event("t", json!({"severity": "high"})), None),
            "missing field fails"
        );
    }

    #[test]
    fn breaker_pauses_at_threshold_and_reenabling_resets() {
        let b = Breaker::new(WebhookState {
            activity: Activity::Active,
            failure_count: 0,
        });
        for _ in 0..2 {
            assert_eq!(b.record_failure(3).activity, Activity::Active);
        }
        assert_eq!(b.record_failure(3).activity, Activity::Paused);
        assert_eq!(
            b.set_active(true, Operator::Api),
            WebhookState {
                activity: Activity::Active,
                failure_count: 0
            }
        );
        b.record_failure(3);
        assert_eq!(b.record_success().map(|s| s.failure_count), Some(0));
        assert!(b.record_success().is_none(), "no streak, nothing to store");
    }

    #[test]
    fn a_tripping_breaker_never_overrides_an_operators_disable() {
        let b = Breaker::new(WebhookState {
            activity: Activity::Disabled(Operator::Api),
            failure_count: 0,
        });
        b.record_failure(1);
        b.deactivate();
        assert_eq!(b.activity(), Activity::Disabled(Operator::Api));
    }

    #[test]
    fn relay_yaml_is_active_false_wins_over_stored_state_and_true_undoes_only_its_own_disable() {
        let paused = Breaker::new(WebhookState {
            activity: Activity::Paused,
            failure_count: 10,
        });
        assert_eq!(paused.apply_file(true), None, "a pause stands");
        assert_eq!(
            paused.apply_file(false).map(|s| s.activity),
            Some(Activity::Disabled(Operator::File))
        );
        assert_eq!(
            paused.apply_file(false),
            None,
            "unchanged: nothing to store"
        );
        assert_eq!(
            paused.apply_file(true),
            Some(WebhookState {
                activity: Activity::Active,
                failure_count: 0
            })
        );
        let by_api = Breaker::new(WebhookState {
            activity: Activity::Disabled(Operator::Api),
            failure_count: 0,
        });
        assert_eq!(by_api.apply_file(true), None);
        assert_eq!(by_api.activity(), Activity::Disabled(Operator::Api));
    }
}
