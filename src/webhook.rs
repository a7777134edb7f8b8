//! The live set of webhooks: specs compiled for delivery, which events each
//! one wants, and each webhook's circuit-breaker state.
//!
//! Owns: matching events to webhooks (event types and filters) and the
//! in-memory breaker state. The store persists that state; this module never
//! touches SQL itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Serialize;
use serde_json::Value;

use crate::config::WebhookSpec;
use crate::event::Event;
use crate::store::{Target, WebhookState};
use crate::template::Template;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Config,
    Api,
}

/// Breaker state shared by every version of one webhook.
#[derive(Debug)]
pub struct Breaker {
    active: AtomicBool,
    failures: AtomicU32,
}

impl Breaker {
    pub fn new(s: WebhookState) -> Breaker {
        Breaker {
            active: AtomicBool::new(s.is_active),
            failures: AtomicU32::new(s.failure_count),
        }
    }
    pub fn snapshot(&self) -> WebhookState {
        WebhookState {
            is_active: self.active.load(Ordering::SeqCst),
            failure_count: self.failures.load(Ordering::SeqCst),
        }
    }
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }
    /// A delivery succeeded: the streak of failures ends. `None` when there
    /// was no streak (nothing to store).
    pub fn record_success(&self) -> Option<WebhookState> {
        (self.failures.swap(0, Ordering::SeqCst) > 0).then(|| self.snapshot())
    }
    /// A delivery failed for good. Trips after `threshold` in a row (0 = never).
    pub fn record_failure(&self, threshold: u32) -> WebhookState {
        let n = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
        if threshold > 0 && n >= threshold {
            self.active.store(false, Ordering::SeqCst);
        }
        self.snapshot()
    }
    pub fn deactivate(&self) -> WebhookState {
        self.active.store(false, Ordering::SeqCst);
        self.snapshot()
    }
    /// Re-enabling resets the failure counter.
    pub fn set_active(&self, active: bool) -> WebhookState {
        if active {
            self.failures.store(0, Ordering::SeqCst);
        }
        self.active.store(active, Ordering::SeqCst);
        self.snapshot()
    }
}

/// A webhook compiled for delivery.
#[derive(Debug)]
pub struct Webhook {
    pub id: String,
    pub spec: WebhookSpec,
    pub source: Source,
    pub template: Option<Template>,
    /// `options` as JSON text, handed to the formatter plugin.
    pub format_options: String,
    /// `destination_options` as JSON text, handed to the destination plugin.
    pub destination_options: String,
    pub breaker: Arc<Breaker>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Webhook {
    /// Whether this webhook wants `event`: its event types (or the default
    /// list) name the type or `*`, and every filter entry matches.
    pub fn wants(&self, event: &Event, default_types: Option<&[String]>) -> bool {
        let types = self.spec.event_types.as_deref().or(default_types);
        let type_ok = match types {
            None => true,
            Some(list) => list.iter().any(|t| t == "*" || *t == event.event_type),
        };
        type_ok
            && self.spec.filter.iter().flatten().all(|(path, allowed)| {
                lookup(&event.data, path)
                    .is_some_and(|v| allowed.values().iter().any(|a| same(v, a)))
            })
    }
}

fn lookup<'v>(data: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = data;
    for seg in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Filter comparison: strings case-insensitively, numbers and booleans by
/// value (`"5"` matches `5`).
fn same(v: &Value, allowed: &Value) -> bool {
    match (v, allowed) {
        (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
        (Value::Array(items), _) => items.iter().any(|i| same(i, allowed)),
        (a, b) => scalar_text(a).is_some() && scalar_text(a) == scalar_text(b),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_ascii_lowercase()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An immutable snapshot of all webhooks.
#[derive(Debug, Default)]
pub struct Webhooks {
    /// Newest first.
    pub list: Vec<Arc<Webhook>>,
    by_id: HashMap<String, Arc<Webhook>>,
    pub default_types: Option<Vec<String>>,
}

impl Webhooks {
    pub fn get(&self, id: &str) -> Option<&Arc<Webhook>> {
        self.by_id.get(id)
    }

    /// The delivery targets of an event, each with a new delivery id.
    pub fn targets(&self, event: &Event) -> Vec<Target> {
        self.list
            .iter()
            .filter(|w| w.wants(event, self.default_types.as_deref()))
            .map(|w| Target {
                delivery_id: crate::event::new_id(),
                webhook_id: w.id.clone(),
                active: w.breaker.is_active(),
            })
            .collect()
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
}

impl Registry {
    /// `states` are the persisted breaker states.
    pub fn new(states: Vec<(String, WebhookState)>) -> Registry {
        let breakers = states
            .into_iter()
            .map(|(id, s)| (id, Arc::new(Breaker::new(s))))
            .collect();
        Registry {
            current: ArcSwap::from_pointee(Webhooks::default()),
            breakers: Mutex::new(breakers),
        }
    }

    pub fn load(&self) -> Arc<Webhooks> {
        self.current.load_full()
    }

    pub fn breaker(&self, id: &str, initial_active: bool) -> Arc<Breaker> {
        let mut map = match self.breakers.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(id.to_owned())
            .or_insert_with(|| {
                Arc::new(Breaker::new(WebhookState {
                    is_active: initial_active,
                    failure_count: 0,
                }))
            })
            .clone()
    }

    /// Rebuilds the set from the file's webhooks and the API's.
    pub fn rebuild(&self, cfg: &crate::config::Config, api: Vec<crate::store::StoredWebhook>) {
        let loaded_at = crate::event::now_ms();
        let mut declared: Vec<Declared> = cfg
            .file_webhooks()
            .into_iter()
            .enumerate()
            .map(|(i, spec)| Declared {
                spec,
                source: Source::Config,
                // Stamped with the load time, one ms apart to keep file order.
                created_at_ms: loaded_at + i as i64,
                updated_at_ms: loaded_at + i as i64,
            })
            .collect();
        declared.extend(api.into_iter().map(|w| Declared {
            spec: w.spec,
            source: Source::Api,
            created_at_ms: w.created_at_ms,
            updated_at_ms: w.updated_at_ms,
        }));
        self.replace(declared, cfg.defaults.event_types.clone());
    }

    /// Replaces the whole set. Breaker state survives for ids that remain.
    pub fn replace(&self, declared: Vec<Declared>, default_types: Option<Vec<String>>) {
        let mut list: Vec<Arc<Webhook>> = declared
            .into_iter()
            .map(|d| {
                let id = d.spec.id.clone().unwrap_or_default();
                Arc::new(Webhook {
                    breaker: self.breaker(&id, d.spec.is_active),
                    template: d.spec.body.as_ref().map(|b| Template::compile(&b.0)),
                    format_options: d.spec.format_options_json(),
                    destination_options: d.spec.destination_options_json(),
                    id,
                    spec: d.spec,
                    source: d.source,
                    created_at_ms: d.created_at_ms,
                    updated_at_ms: d.updated_at_ms,
                })
            })
            .collect();
        list.sort_by_key(|w| std::cmp::Reverse(w.created_at_ms));
        let by_id = list.iter().map(|w| (w.id.clone(), w.clone())).collect();
        self.current.store(Arc::new(Webhooks {
            list,
            by_id,
            default_types,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
            breaker: Arc::new(Breaker::new(WebhookState {
                is_active: true,
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
            data,
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
    fn breaker_trips_at_threshold_and_reenabling_resets() {
        let b = Breaker::new(WebhookState {
            is_active: true,
            failure_count: 0,
        });
        for _ in 0..2 {
            assert!(b.record_failure(3).is_active);
        }
        assert!(!b.record_failure(3).is_active);
        assert_eq!(
            b.set_active(true),
            WebhookState {
                is_active: true,
                failure_count: 0
            }
        );
        b.record_failure(3);
        assert_eq!(b.record_success().map(|s| s.failure_count), Some(0));
        assert!(b.record_success().is_none(), "no streak, nothing to store");
    }
}
