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

use serde_json::Value;

use crate::config::DigestSpec;
use crate::event::{Data, Event, rfc3339_ms};
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
/// window of its group in the accept transaction, and that membership is
/// the decision the store keeps: `store::is_recorded`).
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
        self.members
            .push(member(w.id(), &w.spec().name, spec, event));
        Some(super::Held {
            decision: super::Decision::Digested,
            rule: Some("digest".into()),
            reference: None,
        })
    }
}

/// The membership of `event` in a webhook's digest: its group and window.
pub fn member(
    webhook_id: &str,
    webhook_name: &str,
    spec: &DigestSpec,
    event: &Event,
) -> DigestMember {
    DigestMember {
        webhook_id: webhook_id.to_owned(),
        webhook_name: webhook_name.to_owned(),
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
        .map(|p| {
            (
                p.as_str(),
                event.data.path(p.split('.')).unwrap_or(&Value::Null),
            )
        })
        .collect();
    serde_json::to_string(&group).unwrap_or_else(|_| "{}".into())
}

/// The digest event of a closed window: type `digest`, data
/// `{"alerts": [{id, type, time, data}, ...], "count": N, "group": {...}}`
/// (members in arrival order). Its id is the window's id, so closing a
/// window twice (two instances, a retry) makes one event.
///
/// The stored body is spliced from the members' stored bodies (each is
/// exactly an alert: `store::event_json` of the member), so no member is
/// parsed or serialised to build it. The event's `data` is that text, read
/// on demand ([`Data::Text`]): rendering `{{data}}` sends it on as it is,
/// and a template variable decodes only the member it names. The data's
/// members are indexed from where they were written, not by scanning the
/// text again (a member body is its stored, checked text).
pub fn digest_event(sealed: SealedDigest, now: i64) -> DigestEvent {
    let count = sealed.members.len();
    let group = match serde_json::from_str::<serde::de::IgnoredAny>(&sealed.group) {
        Ok(_) => sealed.group.as_str(),
        Err(_) => "{}",
    };
    let time = rfc3339_ms(now);
    let members_len: usize = sealed.members.iter().map(|m| m.len() + 1).sum();
    let mut body = String::with_capacity(members_len + group.len() + sealed.id.len() + 128);
    body.push_str(r#"{"id":"#);
    push_json_str(&mut body, &sealed.id);
    body.push_str(r#","type":"#);
    push_json_str(&mut body, DIGEST_TYPE);
    body.push_str(r#","time":"#);
    push_json_str(&mut body, &time);
    body.push_str(r#","data":"#);
    let data_at = body.len();
    body.push_str(r#"{"alerts":["#);
    let members_at = body.len();
    for (i, m) in sealed.members.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(m);
    }
    let members = members_at..body.len();
    body.push(']');
    let alerts = members_at - 1..body.len();
    body.push_str(r#","count":"#);
    let count_at = body.len();
    body.push_str(&count.to_string());
    let count_span = count_at..body.len();
    body.push_str(r#","group":"#);
    let group_span = body.len()..body.len() + group.len();
    body.push_str(group);
    body.push('}');
    // Indexed from what was just written, not scanned again: the members
    // are stored bodies (checked when accepted) and the group was checked
    // above.
    let at = |r: std::ops::Range<usize>| r.start - data_at..r.end - data_at;
    let data = Data::Text(relay_sdk::Data::from_object_spans(
        body[data_at..].to_owned(),
        &[
            ("alerts", at(alerts)),
            ("count", at(count_span)),
            ("group", at(group_span)),
        ],
    ));
    body.push('}');
    DigestEvent {
        event: Event {
            id: sealed.id,
            event_type: DIGEST_TYPE.into(),
            time,
            data,
        },
        body,
        members,
    }
}

/// A digest event with its stored body (the same JSON).
#[derive(Debug)]
pub struct DigestEvent {
    pub event: Event,
    pub body: String,
    /// The span of `body` that is the members' stored bodies, in order,
    /// joined by `,` (a store may keep the body without them: see
    /// `Storage::finish_digest`).
    pub members: std::ops::Range<usize>,
}

/// `s` as a JSON string.
fn push_json_str(out: &mut String, s: &str) {
    out.push_str(&Value::from(s).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(yaml: &str) -> DigestSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn event(id: &str, data: Value) -> Event {
        Event {
            id: id.into(),
            event_type: "finding".into(),
            time: "2026-01-01T00:00:00Z".into(),
            data: data.into(),
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
        let members = [
            event("a", json!({"n": 1})),
            event("b \"q\"", json!({"n": 2})),
        ];
        let sealed = SealedDigest {
            id: "d\"1".into(),
            webhook_id: "w".into(),
            group: r#"{"tenant":"acme"}"#.into(),
            opened_at_ms: 0,
            members: members
                .iter()
                .map(|m| crate::store::event_json(m).unwrap())
                .collect(),
        };
        let bodies = sealed.members.join(",");
        let DigestEvent {
            event: e,
            body,
            members,
        } = digest_event(sealed, 1_700_000_000_000);
        assert_eq!(&body[members], bodies, "the span of the members' bodies");
        assert_eq!((e.id.as_str(), e.event_type.as_str()), ("d\"1", "digest"));
        assert_eq!(e.time, "2023-11-14T22:13:20.000Z");
        assert_eq!(e.data["group"], json!({"tenant": "acme"}));
        assert_eq!(e.data["count"], 2);
        assert_eq!(
            e.data["alerts"],
            json!([
                {"id": "a", "type": "finding", "time": "2026-01-01T00:00:00Z", "data": {"n": 1}},
                {"id": "b \"q\"", "type": "finding", "time": "2026-01-01T00:00:00Z", "data": {"n": 2}}
            ])
        );
        // The spliced body is the event's JSON (the same value).
        let stored: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(stored, serde_json::to_value(&e).unwrap());
    }

    #[test]
    fn a_digest_whose_group_is_not_json_has_an_empty_group() {
        let sealed = |group: &str, members: Vec<String>| SealedDigest {
            id: "d".into(),
            webhook_id: "w".into(),
            group: group.into(),
            opened_at_ms: 0,
            members,
        };
        let good = crate::store::event_json(&event("a", json!({}))).unwrap();
        let e = digest_event(sealed("not json", vec![good]), 0);
        assert_eq!(e.event.data["group"], json!({}));
        assert_eq!(e.event.data["count"], 1);
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
