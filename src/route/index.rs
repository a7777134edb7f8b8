//! The routing index (issue 15, "Routing at MSP scale"): which webhooks an
//! event could match, found without looking at those that cannot.
//!
//! Each webhook is filed under one key:
//! - `Values(field, values)` when its filter has an equality condition on a
//!   field (`tenant: acme`, `tenant: [a, b]`, `type: x`): looked up by the
//!   event's value(s) at that field;
//! - else `Types` when its event types (or the default list) restrict the
//!   type: looked up by the event's type;
//! - else `Always`: a candidate for every event.
//!
//! A candidate still gets the full check (types, whole filter, mute): the
//! index only leaves out webhooks that cannot match, so an event costs the
//! candidates it has, not the number of webhooks.
//!
//! Owns: the buckets. Persistent maps (imbl): a snapshot is cloned in O(1)
//! and one webhook is filed or removed in O(log n), so an API create,
//! update or delete never rebuilds the index.

use std::sync::Arc;

use imbl::{HashMap, OrdSet};

use super::matcher::{index_texts, lookup};
use crate::config::WebhookSpec;
use crate::config::matcher::{Cond, Field};
use crate::event::Event;

type Ids = OrdSet<Arc<str>>;

/// Where a webhook is filed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Always,
    Types(Vec<String>),
    Values(Field, Vec<String>),
}

impl Key {
    /// The key of a webhook; `default_types` applies when it names none.
    pub fn of(spec: &WebhookSpec, default_types: Option<&[String]>) -> Key {
        if let Some(filter) = &spec.filter {
            let eq = filter
                .root()
                .all
                .iter()
                .find_map(|(f, c)| equality(c).map(|v| (f.clone(), v)));
            if let Some((field, values)) = eq {
                return Key::Values(field, values);
            }
        }
        match spec.event_types.as_deref().or(default_types) {
            Some(types) if !types.iter().any(|t| t == "*") => Key::Types(types.to_vec()),
            _ => Key::Always,
        }
    }
}

fn equality(c: &Cond) -> Option<Vec<String>> {
    c.equal_values()
        .map(|v| v.into_iter().map(str::to_owned).collect())
}

/// The buckets.
#[derive(Debug, Clone, Default)]
pub struct Index {
    always: Ids,
    by_type: HashMap<String, Ids>,
    by_value: HashMap<(Arc<str>, String), Ids>,
    /// Fields some webhook is filed by, with how many.
    fields: HashMap<Arc<str>, (Field, usize)>,
    keys: HashMap<Arc<str>, Key>,
}

impl Index {
    /// Files `id` under `key`, replacing where it was filed before.
    pub fn insert(&mut self, id: Arc<str>, key: Key) {
        self.remove(&id);
        match &key {
            Key::Always => {
                self.always.insert(id.clone());
            }
            Key::Types(types) => {
                for t in types {
                    self.by_type
                        .entry(t.clone())
                        .or_default()
                        .insert(id.clone());
                }
            }
            Key::Values(field, values) => {
                let name: Arc<str> = field.name().into();
                self.fields
                    .entry(name.clone())
                    .or_insert_with(|| (field.clone(), 0))
                    .1 += 1;
                for v in values {
                    self.by_value
                        .entry((name.clone(), v.clone()))
                        .or_default()
                        .insert(id.clone());
                }
            }
        }
        self.keys.insert(id, key);
    }

    pub fn remove(&mut self, id: &Arc<str>) {
        let Some(key) = self.keys.remove(id) else {
            return;
        };
        match key {
            Key::Always => {
                self.always.remove(id);
            }
            Key::Types(types) => {
                for t in types {
                    drop_from(&mut self.by_type, &t, id);
                }
            }
            Key::Values(field, values) => {
                let name: Arc<str> = field.name().into();
                for v in values {
                    drop_from(&mut self.by_value, &(name.clone(), v), id);
                }
                if let Some(entry) = self.fields.get_mut(&name) {
                    entry.1 -= 1;
                    if entry.1 == 0 {
                        self.fields.remove(&name);
                    }
                }
            }
        }
    }

    /// Ids of the webhooks `event` could match, each once, sorted.
    pub fn candidates(&self, event: &Event) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = self.always.iter().cloned().collect();
        if let Some(ids) = self.by_type.get(&event.event_type) {
            out.extend(ids.iter().cloned());
        }
        let mut texts = Vec::new();
        for (name, (field, _)) in &self.fields {
            texts.clear();
            if let Some(v) = lookup(event, field) {
                index_texts(v, &mut texts);
            }
            for t in &texts {
                if let Some(ids) = self.by_value.get(&(name.clone(), t.clone())) {
                    out.extend(ids.iter().cloned());
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// How many webhooks are filed.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn drop_from<K: std::hash::Hash + Eq + Clone>(map: &mut HashMap<K, Ids>, key: &K, id: &Arc<str>) {
    if let Some(set) = map.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(yaml: &str) -> WebhookSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn ev(t: &str, data: serde_json::Value) -> Event {
        Event {
            id: "e".into(),
            event_type: t.into(),
            time: "2026-01-01T00:00:00Z".into(),
            data: data.into(),
        }
    }

    fn ids(v: Vec<Arc<str>>) -> Vec<String> {
        v.into_iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn webhooks_are_found_by_tenant_value_type_or_always_and_only_those() {
        let mut ix = Index::default();
        for i in 0..1000 {
            let s = spec(&format!(
                "name: t{i}\nurl: https://x.example\nfilter: {{tenant: T{i}, severity: {{at_least: high}}}}\n"
            ));
            ix.insert(format!("t{i}").into(), Key::of(&s, None));
        }
        let typed = spec("name: ty\nurl: https://x.example\nevent_types: [finding]\n");
        ix.insert("typed".into(), Key::of(&typed, None));
        let all = spec("name: all\nurl: https://x.example\n");
        ix.insert("all".into(), Key::of(&all, None));
        assert_eq!(
            ids(ix.candidates(&ev("finding", json!({"tenant": "t42"})))),
            ["all", "t42", "typed"]
        );
        assert_eq!(
            ids(ix.candidates(&ev("other", json!({"tenant": ["T7", "t8"]})))),
            ["all", "t7", "t8"]
        );
        assert_eq!(ids(ix.candidates(&ev("other", json!({})))), ["all"]);
        ix.remove(&"t42".into());
        assert_eq!(
            ids(ix.candidates(&ev("x", json!({"tenant": "t42"})))),
            ["all"]
        );
        assert_eq!(ix.len(), 1001);
    }

    #[test]
    fn refiling_a_webhook_moves_it_and_a_filter_without_equality_is_not_indexed_by_it() {
        let mut ix = Index::default();
        let a = spec("name: a\nurl: https://x.example\nfilter: {tenant: a}\n");
        ix.insert("w".into(), Key::of(&a, None));
        let b = spec("name: a\nurl: https://x.example\nfilter: {tenant: b}\n");
        ix.insert("w".into(), Key::of(&b, None));
        assert!(ix.candidates(&ev("x", json!({"tenant": "a"}))).is_empty());
        assert_eq!(ids(ix.candidates(&ev("x", json!({"tenant": "B"})))), ["w"]);
        let re = spec("name: r\nurl: https://x.example\nfilter: {tenant: {regex: '^a'}}\n");
        assert_eq!(Key::of(&re, None), Key::Always);
        let d = vec!["only".to_string()];
        assert_eq!(Key::of(&re, Some(&d)), Key::Types(d.clone()));
    }
}
