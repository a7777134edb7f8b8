//! Routing and noise control end to end (issue 15, DESIGN §17), against the
//! real binary: suppression, mute windows, filter/type decisions, the
//! explain API (`GET /api/v1/events/{id}`, `GET /api/v1/events?decision=`),
//! matchers refused through the API (422) and by `relay check`
//! (`file:line:col`), API webhooks with matchers routed without a rebuild.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// `GET` with a token; panics when the relay is unreachable.
async fn get(relay: &Relay, path: &str, token: &str) -> (u16, Value) {
    relay.get(path, Some(token)).await.expect("relay reachable")
}

async fn ingest(relay: &Relay, event: Value) {
    let (s, b) = relay.post("/api/v1/events", Some(INGEST), &event).await;
    assert_eq!(s, 202, "{b}");
}

/// The decisions of an event as (webhook name, decision, rule, recorded).
async fn decisions(relay: &Relay, id: &str) -> Vec<(Option<String>, String, Option<String>, bool)> {
    let (s, b) = get(relay, &format!("/api/v1/events/{id}"), VIEWER).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["event"]["id"], id, "{b}");
    let mut out: Vec<_> = b["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .map(|d| {
            (
                d["webhook_name"].as_str().map(str::to_owned),
                d["decision"].as_str().unwrap_or_default().to_owned(),
                d["rule"].as_str().map(str::to_owned),
                d["recorded"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

fn webhook(name: &str, url: &str, extra: &str) -> String {
    format!("  - name: {name}\n    url: {url}\n    retry_count: 0\n{extra}")
}

on_both_stores! {
async fn a_suppressed_event_reaches_no_receiver_and_is_explained_as_suppressed(backend) {
    let rx = Receiver::start().await;
    let extra = format!(
        "routing:\n  suppress:\n    - name: leftover\n      match: {{category: leftover_persistence, live: false}}\nwebhooks:\n{}",
        webhook(
            "Slack Critical",
            &rx.url("/hook/T000/SECRETPATH"),
            "    secret: route-signing-secret-1\n    headers: {X-Api-Key: hdr-secret-value-1}\n"
        )
    );
    let relay = backend.start(&extra).await;
    ingest(&relay, json!({"type": "finding", "id": "old-1", "data": {"category": "Leftover_Persistence", "live": false}})).await;
    ingest(&relay, json!({"type": "finding", "id": "live-1", "data": {"category": "leftover_persistence", "live": true}})).await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_ids: Vec<String> = rx.received().iter().map(|r| r.json()["id"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(got_ids, ["live-1"], "only the live event is delivered: {got:?}");

    assert_eq!(
        decisions(&relay, "old-1").await,
        [(None, "suppressed".to_owned(), Some("leftover".to_owned()), true)]
    );
    let (_, live) = get(&relay, "/api/v1/events/live-1", VIEWER).await;
    let d = &live["decisions"][0];
    assert_eq!((d["decision"].as_str(), d["webhook_name"].as_str()), (Some("delivered"), Some("Slack Critical")), "{live}");
    // The delivery id in `ref` is the one the history shows.
    let history = relay
        .wait_history("slack-critical", Duration::from_secs(10), |a| !a.is_empty())
        .await;
    assert_eq!(d["ref"], history[0]["delivery_id"], "{live}");
    // Viewers see names and ids, never the webhook's secret, header or URL path.
    let text = live.to_string();
    for secret in ["route-signing-secret-1", "hdr-secret-value-1", "SECRETPATH"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}
}

/// A mute window of two hours around now in `zone` (on the weekday it
/// starts), and one that opens an hour from now.
fn windows_around_now(zone: &str) -> (String, String) {
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::get(zone).unwrap());
    let at = |h: i64| now.checked_add(jiff::Span::new().hours(h)).unwrap();
    let hm = |z: &jiff::Zoned| format!("{:02}:{:02}", z.hour(), z.minute());
    let day = |z: &jiff::Zoned| {
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            [z.weekday().to_monday_zero_offset() as usize]
    };
    let (start, end) = (at(-1), at(1));
    let covering = format!(
        "    mute: {{weekdays: [{}], times: ['{}-{}'], location: {zone}}}\n",
        day(&start),
        hm(&start),
        hm(&end)
    );
    let (later_start, later_end) = (at(1), at(2));
    let later = format!(
        "    mute: {{weekdays: [{}], times: ['{}-{}'], location: {zone}}}\n",
        day(&later_start),
        hm(&later_start),
        hm(&later_end)
    );
    (covering, later)
}

on_both_stores! {
async fn a_muted_webhook_records_muted_and_sends_nothing(backend) {
    let rx = Receiver::start().await;
    let (covering, later) = windows_around_now("Pacific/Chatham");
    let extra = format!(
        "webhooks:\n{}{}",
        webhook("Night Pager", &rx.url("/muted"), &covering),
        webhook("Day Chat", &rx.url("/open"), &later),
    );
    let relay = backend.start(&extra).await;
    for i in 0..3 {
        ingest(&relay, json!({"type": "finding", "id": format!("m-{i}")})).await;
    }
    rx.wait_for(3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let paths: BTreeSet<String> = rx.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(rx.received().len(), 3);
    assert_eq!(paths, BTreeSet::from(["/open".to_owned()]), "nothing reaches the muted webhook");
    let d = decisions(&relay, "m-1").await;
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!((d[0].0.as_deref(), d[0].1.as_str()), (Some("Day Chat"), "delivered"));
    assert_eq!((d[1].0.as_deref(), d[1].1.as_str()), (Some("Night Pager"), "muted"));
    let rule = d[1].2.clone().unwrap_or_default();
    assert!(rule.contains("Pacific/Chatham"), "the rule names the window: {rule}");
}
}

#[tokio::test(flavor = "multi_thread")]
async fn type_and_filter_decisions_are_explained_with_the_field_that_failed() {
    let rx = Receiver::start().await;
    let extra = format!(
        "webhooks:\n{}{}{}{}",
        webhook(
            "Other Types",
            &rx.url("/a"),
            "    event_types: [scan_done]\n"
        ),
        webhook(
            "Criticals",
            &rx.url("/b"),
            "    filter: {severity: {at_least: critical}}\n"
        ),
        webhook("Acme", &rx.url("/c"), "    filter: {tenant: acme}\n"),
        webhook(
            "Highs",
            &rx.url("/d"),
            "    filter: {severity: {at_least: high}, host: {regex: '^db-'}}\n"
        ),
    );
    let relay = Relay::start(&extra).await;
    ingest(&relay, json!({"type": "finding", "id": "f-1", "data": {"severity": "high", "tenant": "globex", "host": "db-7"}})).await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 1, "{got:?}");
    assert_eq!(got[0].path, "/d");
    let d = decisions(&relay, "f-1").await;
    assert_eq!(
        d,
        [
            // Left out by the index (tenant ≠ acme): worked out on request.
            (
                Some("Acme".into()),
                "filtered".into(),
                Some("filter.tenant".into()),
                false
            ),
            (
                Some("Criticals".into()),
                "filtered".into(),
                Some("filter.severity".into()),
                true
            ),
            (Some("Highs".into()), "delivered".into(), None, true),
            // Left out by the index (its type list).
            (
                Some("Other Types".into()),
                "type".into(),
                Some("event_types".into()),
                false
            ),
        ]
    );
    let (s, _) = get(&relay, "/api/v1/events/nope", VIEWER).await;
    assert_eq!(s, 404);
}

on_both_stores! {
async fn decisions_are_listed_by_kind_newest_first_and_paged(backend) {
    let rx = Receiver::start().await;
    let extra = format!(
        "routing:\n  suppress:\n    - {{name: noise, match: {{noise: true}}}}\nwebhooks:\n{}",
        webhook("All", &rx.url("/all"), "")
    );
    let relay = backend.start(&extra).await;
    for i in 0..5 {
        ingest(&relay, json!({"type": "t", "id": format!("quiet-{i}"), "data": {"noise": true}})).await;
    }
    for i in 0..3 {
        ingest(&relay, json!({"type": "t", "id": format!("loud-{i}")})).await;
    }
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut path = "/api/v1/events?decision=suppressed&limit=2".to_owned();
    loop {
        let (s, b) = get(&relay, &path, VIEWER).await;
        assert_eq!(s, 200, "{b}");
        pages += 1;
        for d in b["data"].as_array().unwrap() {
            assert_eq!(d["decision"], "suppressed");
            assert_eq!(d["rule"], "noise");
            assert_eq!(d["event_type"], "t");
            seen.push(d["event_id"].as_str().unwrap().to_owned());
        }
        match b["next"].as_str() {
            Some(c) => path = format!("/api/v1/events?decision=suppressed&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["quiet-4", "quiet-3", "quiet-2", "quiet-1", "quiet-0"], "newest first, each once");
    let (_, delivered) = get(&relay, "/api/v1/events?decision=delivered", VIEWER).await;
    let ids: BTreeSet<&str> = delivered["data"].as_array().unwrap().iter().map(|d| d["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, BTreeSet::from(["loud-0", "loud-1", "loud-2"]));
    let (_, future) = get(&relay, "/api/v1/events?since=2999-01-01T00:00:00Z", VIEWER).await;
    assert_eq!(future["data"].as_array().map(Vec::len), Some(0));
    let (s, b) = get(&relay, "/api/v1/events?decision=ignored", VIEWER).await;
    assert_eq!(s, 400);
    assert!(b["error"]["message"].as_str().unwrap().contains("catch_all"), "{b}");
    let (s, _) = relay.get("/api/v1/events", Some(INGEST)).await.unwrap();
    assert_eq!(s, 403, "the ingest role reads nothing");
}
}

on_both_stores! {
async fn api_webhooks_take_matchers_mute_and_digest_and_a_bad_one_is_a_422_naming_the_field(backend) {
    let rx = Receiver::start().await;
    let relay = backend.start("").await;
    let create = |body: Value| {
        let relay = &relay;
        async move { relay.request_json("POST", "/api/v1/webhooks", ADMIN, &body).await }
    };
    for (body, field, words) in [
        (json!({"name": "x", "url": rx.url("/x"), "filter": {"severity": {"at_least": "urgent"}}}), "filter", "severity.at_least"),
        (json!({"name": "x", "url": rx.url("/x"), "filter": {"host": {"regex": "("}}}), "filter", "host.regex"),
        (json!({"name": "x", "url": rx.url("/x"), "filter": {"any": []}}), "filter", "any"),
        (json!({"name": "x", "url": rx.url("/x"), "mute": {"location": "Mars/Olympus"}}), "mute", "IANA"),
        (json!({"name": "x", "url": rx.url("/x"), "mute": {"times": ["7-9"]}}), "mute", "HH:MM"),
        (json!({"name": "x", "url": rx.url("/x"), "digest": {"window_s": 0}}), "digest", "window_s"),
    ] {
        let (s, b) = create(body.clone()).await;
        assert_eq!(s, 422, "{body}: {b}");
        let message = b["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(&format!("{field}:")) && message.contains(words), "{body}: {message}");
    }
    let (s, tenants) = create(json!({
        "name": "Acme", "url": rx.url("/acme"),
        "filter": {"tenant": "acme", "severity": {"at_least": "high"}},
        "mute": {"weekdays": ["sat"], "times": ["01:00-01:01"], "location": "Europe/Berlin"},
        "digest": {"window_s": 900, "max_events": 20, "group_by": ["host"], "immediate": {"live": true}}
    })).await;
    assert_eq!(s, 201, "{tenants}");
    assert_eq!(tenants["filter"], json!({"tenant": "acme", "severity": {"at_least": "high"}}));
    assert_eq!(tenants["mute"]["times"], json!(["01:00-01:01"]));
    assert_eq!(tenants["digest"]["max_events"], 20);
    let id = tenants["id"].as_str().unwrap().to_owned();
    ingest(&relay, json!({"type": "f", "id": "acme-low", "data": {"tenant": "acme", "severity": "low"}})).await;
    ingest(&relay, json!({"type": "f", "id": "other", "data": {"tenant": "globex", "severity": "critical"}})).await;
    // `live` events bypass the digest (its `immediate`): delivered at once.
    ingest(&relay, json!({"type": "f", "id": "acme-crit", "data": {"tenant": "ACME", "severity": "critical", "live": true}})).await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 1, "{got:?}");
    assert_eq!(got[0].json()["id"], "acme-crit");
    // An update re-files the webhook: now globex's.
    let (s, b) = relay.request_json("PUT", &format!("/api/v1/webhooks/{id}"), ADMIN, &json!({"filter": {"tenant": "globex"}})).await;
    assert_eq!(s, 200, "{b}");
    ingest(&relay, json!({"type": "f", "id": "acme-2", "data": {"tenant": "acme"}})).await;
    ingest(&relay, json!({"type": "f", "id": "globex-2", "data": {"tenant": "globex", "live": true}})).await;
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 2, "{got:?}");
    assert_eq!(got[1].json()["id"], "globex-2");
    let (s, _) = relay.request_json("DELETE", &format!("/api/v1/webhooks/{id}"), ADMIN, &json!({})).await;
    assert_eq!(s, 204);
    ingest(&relay, json!({"type": "f", "id": "globex-3", "data": {"tenant": "globex"}})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.received().len(), 2, "a deleted webhook gets nothing");
    assert_eq!(decisions(&relay, "globex-3").await, []);
}
}

#[test]
fn relay_check_refuses_a_bad_matcher_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.yaml");
    for (yaml, line, words) in [
        (
            "listen: 127.0.0.1:0\nwebhooks:\n  - name: a\n    url: https://x.example\n    filter:\n      severity: {at_least: urgent}\n",
            6,
            "severity.at_least",
        ),
        (
            "listen: 127.0.0.1:0\nrouting:\n  suppress:\n    - name: s\n      match: {host: {regex: '(db'}}\n",
            5,
            "host.regex",
        ),
        (
            "listen: 127.0.0.1:0\nwebhooks:\n  - name: a\n    url: https://x.example\n    mute: {location: Mars/Olympus}\n",
            5,
            "IANA time zone",
        ),
    ] {
        std::fs::write(&path, yaml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{yaml}");
        let err = String::from_utf8_lossy(&out.stderr);
        let at = format!("{}:{line}:", path.display());
        assert!(err.contains(&at) && err.contains(words), "{yaml}\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_webhook_records_skipped_with_its_delivery_and_sends_nothing() {
    let rx = Receiver::start().await;
    let relay = Relay::start("").await;
    let (s, w) = relay
        .request_json(
            "POST",
            "/api/v1/webhooks",
            ADMIN,
            &json!({"name": "Off", "url": rx.url("/off"), "is_active": false}),
        )
        .await;
    assert_eq!(s, 201, "{w}");
    ingest(&relay, json!({"type": "t", "id": "while-off"})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.received().len(), 0);
    let (_, b) = get(&relay, "/api/v1/events/while-off", VIEWER).await;
    let d = &b["decisions"];
    assert_eq!(d.as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(d[0]["decision"], "skipped");
    assert_eq!(d[0]["webhook_id"], w["id"]);
    let history = relay
        .wait_history(w["id"].as_str().unwrap(), Duration::from_secs(5), |a| {
            !a.is_empty()
        })
        .await;
    assert_eq!(d[0]["ref"], history[0]["delivery_id"], "{b}");
}
