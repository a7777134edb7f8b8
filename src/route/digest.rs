//! Digests (DESIGN §17): a webhook with `digest:` gets its events batched
//! per group into one `digest` event per window.
//!
//! Ingest makes each such event a *member* of its webhook's open window for
//! its group, in the accept transaction ([`member`]); the store opens the
//! window with its first member and stops it taking members once it holds
//! `max_events`. `digester::Digester` closes windows: it wakes at the earliest
//! window end (read from the store, so also after a restart) or when
//! ingest filled one, turns each due window into a digest event
//! ([`digest_event`]) stored with its delivery in one transaction, and
//! offers that delivery to dispatch like any other.
//!
//! Owns: group keys, the digest event's shape. Pure.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::config::DigestSpec;
use crate::event::{Event, rfc3339_ms};
use crate::store::{DigestMember, SealedDigest};

/// The event type of a digest.
pub const DIGEST_TYPE: &str = "digest";

/// Whether `event` goes into a digest of `spec` (it is not `immediate`).
pub fn is_digested(spec: &DigestSpec, event: &Event) -> bool {
    !spec
        .immediate
        .as_ref()
        .is_some_and(|m| super::matcher::matches(m, event))
}

/// The router's webhook hook for digests ([`super::Hooks`]): an event a
/// webhook's digest takes is decided `digested` and becomes a member (its
/// window, and the decision's `ref`, are the store's: it joins the open
/// window of its group in the accept transaction).
#[derive(Debug, Default)]
pub struct DigestHook {
    pub members: Vec<DigestMember>,
}

impl super::Hooks for DigestHook {
    fn webhook(
        &mut self,
        w: &dyn super::Routed,
        event: &Event,
        _now_ms: i64,
    ) -> Option<super::Held> {
        let spec = w.spec().digest.as_ref()?;
        if !is_digested(spec, event) {
            return None;
        }
        self.members.push(member(w.id(), spec, event));
        Some(super::Held {
            decision: super::Decision::Digested,
            rule: Some("digest".into()),
            reference: None,
        })
    }
}

/// The membership of `event` in a webhook's digest: its group and window.
pub fn member(webhook_id: &str, spec: &DigestSpec, event: &Event) -> DigestMember {
    DigestMember {
        webhook_id: webhook_id.to_owned(),
        group: group_of(spec, event),
        window_ms: (spec.window_s as i64).saturating_mul(1000),
        max_events: spec.max_events,
    }
}

/// The group of an event as JSON: `{path: value}` for every `group_by`
/// path (`null` when the event lacks it).
pub fn group_of(spec: &DigestSpec, event: &Event) -> String {
    let group: BTreeMap<&str, &Value> = spec
        .group_by
        .iter()
        .map(|p| (p.as_str(), lookup(&event.data, p).unwrap_or(&Value::Null)))
        .collect();
    serde_json::to_string(&group).unwrap_or_else(|_| "{}".into())
}

/// The digest event of a closed window: type `digest`, data
/// `{"group": {...}, "count": N, "alerts": [{id, type, time, data}, ...]}`
/// (members in arrival order). Its id is the window's id, so closing a
/// window twice (two instances, a retry) makes one event.
pub fn digest_event(sealed: &SealedDigest, now: i64) -> Event {
    let group: Value = serde_json::from_str(&sealed.group).unwrap_or(Value::Object(Map::new()));
    let alerts: Vec<Value> = sealed
        .members
        .iter()
        .map(|e| json!({"id": e.id, "type": e.event_type, "time": e.time, "data": e.data}))
        .collect();
    Event {
        id: sealed.id.clone(),
        event_type: DIGEST_TYPE.into(),
        time: rfc3339_ms(now),
        data: json!({"group": group, "count": alerts.len(), "alerts": alerts}),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> DigestSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn event(id: &str, data: Value) -> Event {
        Event {
            id: id.into(),
            event_type: "finding".into(),
            time: "2026-01-01T00:00:00Z".into(),
            data,
        }
    }

    #[test]
    fn the_group_holds_every_group_by_path_and_null_for_missing_ones() {
        let s = spec("window_s: 60\ngroup_by: [tenant, finding.host]\n");
        let e = event("a", json!({"tenant": "acme", "finding": {"host": "db1"}}));
        assert_eq!(
            group_of(&s, &e),
            r#"{"finding.host":"db1","tenant":"acme"}"#
        );
        let e = event("b", json!({"tenant": "acme"}));
        assert_eq!(group_of(&s, &e), r#"{"finding.host":null,"tenant":"acme"}"#);
        assert_eq!(group_of(&spec("window_s: 60\n"), &e), "{}");
    }

    #[test]
    fn an_immediate_event_bypasses_the_digest() {
        let s = spec("window_s: 60\nimmediate: {status: [live, attacker_retains_password]}\n");
        assert!(!is_digested(&s, &event("a", json!({"status": "LIVE"}))));
        assert!(is_digested(
            &s,
            &event("b", json!({"status": "historical"}))
        ));
        assert!(is_digested(&s, &event("c", json!({}))));
    }

    #[test]
    fn a_digest_event_lists_its_members_in_order_with_their_count_and_group() {
        let sealed = SealedDigest {
            id: "d1".into(),
            webhook_id: "w".into(),
            group: r#"{"tenant":"acme"}"#.into(),
            opened_at_ms: 0,
            members: vec![event("a", json!({"n": 1})), event("b", json!({"n": 2}))],
        };
        let e = digest_event(&sealed, 1_700_000_000_000);
        assert_eq!((e.id.as_str(), e.event_type.as_str()), ("d1", "digest"));
        assert_eq!(e.data["group"], json!({"tenant": "acme"}));
        assert_eq!(e.data["count"], 2);
        assert_eq!(
            e.data["alerts"],
            json!([
                {"id": "a", "type": "finding", "time": "2026-01-01T00:00:00Z", "data": {"n": 1}},
                {"id": "b", "type": "finding", "time": "2026-01-01T00:00:00Z", "data": {"n": 2}}
            ])
        );
    }

    #[test]
    fn digest_config_refuses_out_of_range_windows_and_sizes() {
        for (yaml, field) in [
            ("window_s: 0\n", "window_s"),
            ("window_s: 999999999\n", "window_s"),
            ("window_s: 60\nmax_events: 0\n", "max_events"),
            ("window_s: 60\nmax_events: 100000\n", "max_events"),
        ] {
            let e = serde_saphyr::from_str::<DigestSpec>(yaml).unwrap_err();
            assert!(e.to_string().contains(field), "{yaml}: {e}");
        }
        let e = serde_saphyr::from_str::<DigestSpec>("window_s: 60\nevery: 1\n").unwrap_err();
        assert!(e.to_string().contains("every"), "{e}");
    }
}
