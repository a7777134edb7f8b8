//! Noise control end to end (DESIGN §17, issue 15): dedup, digests
//! (durable windows), the catch-all and test-all — the real binary, real
//! receivers on loopback, on SQLite and on PostgreSQL where the behaviour is
//! the store's.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn webhook(name: &str, url: &str, extra: &str) -> String {
    format!("  - name: {name}\n    url: {url}\n{extra}")
}

/// The JSON bodies a receiver got.
fn bodies(rx: &Receiver) -> Vec<Value> {
    rx.received().iter().map(Received::json).collect()
}

/// Waits until `rx` has exactly `n` requests, then makes sure no more come
/// within `quiet`.
async fn exactly(rx: &Receiver, n: usize, timeout: Duration, quiet: Duration) -> Vec<Value> {
    rx.wait_for(n, timeout).await;
    tokio::time::sleep(quiet).await;
    let got = bodies(rx);
    assert_eq!(got.len(), n, "{got:#?}");
    got
}

on_both_stores! {
/// routing.dedup: five events with one key inside the window are one
/// notification; the repeats are stored, answered with the event they
/// repeat, and counted on it.
async fn five_events_with_one_dedup_key_are_one_delivery_counted_five_times(backend) {
    let rx = Receiver::start().await;
    let relay = backend
        .start(&format!(
            "routing:\n  dedup: {{key: \"{{{{type}}}}:{{{{incident_id}}}}\", window_s: 600}}\nwebhooks:\n{}",
            webhook("Pager", &rx.url("/"), "")
        ))
        .await;
    let mut into = Vec::new();
    for i in 0..5 {
        let (s, b) = relay
            .post(
                "/api/v1/events",
                Some(INGEST),
                &json!({"type": "incident", "id": format!("dd-{i}"), "data": {"incident_id": 7}}),
            )
            .await;
        assert_eq!(s, 202, "{b}");
        into.push(b["accepted"][0].clone());
    }
    assert_eq!(into[0]["deliveries"], 1);
    assert!(into[0].get("deduped_into").is_none(), "{}", into[0]);
    for a in &into[1..] {
        assert_eq!((a["deliveries"].as_u64(), a["deduped_into"].as_str()), (Some(0), Some("dd-0")), "{a}");
    }
    // Another key, and an event without the key's field, are not merged.
    relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!([{"type": "incident", "id": "other", "data": {"incident_id": 8}},
                    {"type": "incident", "id": "keyless", "data": {}}]),
        )
        .await;
    let got = exactly(&rx, 3, Duration::from_secs(10), Duration::from_millis(500)).await;
    let mut ids: Vec<&str> = got.iter().filter_map(|b| b["id"].as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["dd-0", "keyless", "other"]);
    let (s, first) = relay.get("/api/v1/events/dd-0", Some(VIEWER)).await.expect("explain");
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["dedup"]["count"], 5, "{first}");
    let (_, repeat) = relay.get("/api/v1/events/dd-3", Some(VIEWER)).await.expect("explain");
    let decisions = repeat["decisions"].as_array().expect("decisions");
    assert_eq!(decisions.len(), 1, "{repeat}");
    assert_eq!((decisions[0]["decision"].as_str(), decisions[0]["ref"].as_str()), (Some("deduped"), Some("dd-0")), "{repeat}");
}
}

on_both_stores! {
/// A digest with max_events 20: 50 events are 3 digests holding all 50
/// exactly once (20, 20, then 10 at the window's end); an `immediate`
/// event among them is delivered at once and in no digest.
async fn fifty_events_make_three_digests_and_an_immediate_one_goes_at_once(backend) {
    let rx = Receiver::start().await;
    let relay = backend
        .start(&format!(
            "webhooks:\n{}",
            webhook(
                "Baseline",
                &rx.url("/"),
                "    digest: {window_s: 3, max_events: 20, group_by: [tenant], immediate: {status: live}}\n"
            )
        ))
        .await;
    let mut batch: Vec<Value> = (0..50)
        .map(|i| json!({"type": "finding", "id": format!("f-{i:02}"), "data": {"tenant": "acme", "n": i}}))
        .collect();
    batch.insert(25, json!({"type": "finding", "id": "live-1", "data": {"tenant": "acme", "status": "LIVE"}}));
    let posted = Instant::now();
    let (s, b) = relay.post("/api/v1/events", Some(INGEST), &Value::Array(batch)).await;
    assert_eq!(s, 202, "{b}");
    // The immediate event and the two full digests come at once.
    let early = rx.wait_for(3, Duration::from_secs(2)).await;
    assert!(early.iter().any(|r| r.json()["id"] == "live-1"), "{:?}", bodies(&rx));
    let got = exactly(&rx, 4, Duration::from_secs(10), Duration::from_millis(800)).await;
    let last = rx.received()[3].at.duration_since(posted);
    assert!(last >= Duration::from_millis(2500), "the partial digest came after {last:?}, before its window ended");
    let digests: Vec<&Value> = got.iter().filter(|b| b["type"] == "digest").collect();
    assert_eq!(digests.len(), 3, "{got:#?}");
    let mut counts: Vec<u64> = digests.iter().map(|d| d["data"]["count"].as_u64().unwrap_or(0)).collect();
    counts.sort();
    assert_eq!(counts, [10, 20, 20]);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for d in &digests {
        assert_eq!(d["data"]["group"], json!({"tenant": "acme"}));
        let alerts = d["data"]["alerts"].as_array().expect("alerts");
        assert_eq!(alerts.len() as u64, d["data"]["count"].as_u64().unwrap_or(0));
        for a in alerts {
            assert_eq!(a["type"], "finding");
            assert!(a["time"].is_string() && a["data"]["tenant"] == "acme", "{a}");
            *seen.entry(a["id"].as_str().unwrap_or("").to_owned()).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 50, "{seen:?}");
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    assert!(!seen.contains_key("live-1"));
    // A member's explanation names its digest; the digest is an event of its own.
    let (_, member) = relay.get("/api/v1/events/f-07", Some(VIEWER)).await.expect("explain");
    let digested: Vec<&Value> = member["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter(|d| d["decision"] == "digested")
        .collect();
    assert_eq!(digested.len(), 1, "{member}");
    let digest_id = digested[0]["ref"].as_str().expect("the digest's id").to_owned();
    assert!(digests.iter().any(|d| d["id"] == digest_id.as_str()), "{member}");
    // The listing: each member's `digested` decision once, paged newest
    // first, alone and among the other decisions (the live event's and the
    // three digests' deliveries).
    let digest_ids: Vec<&str> = digests.iter().filter_map(|d| d["id"].as_str()).collect();
    let listed = list_all(&relay, "decision=digested&limit=7").await;
    assert_eq!(listed.len(), 50, "{listed:#?}");
    let mut members: Vec<&str> = listed.iter().filter_map(|d| d["event_id"].as_str()).collect();
    for d in &listed {
        assert_eq!((d["decision"].as_str(), d["rule"].as_str()), (Some("digested"), Some("digest")), "{d}");
        assert_eq!((d["webhook_name"].as_str(), d["event_type"].as_str()), (Some("Baseline"), Some("finding")), "{d}");
        assert!(digest_ids.contains(&d["ref"].as_str().unwrap_or("")), "{d}");
    }
    members.sort();
    members.dedup();
    assert_eq!(members.len(), 50, "each member once: {members:?}");
    let all = list_all(&relay, "limit=9").await;
    let count = |what: &str| all.iter().filter(|d| d["decision"] == what).count();
    assert_eq!((all.len(), count("digested"), count("delivered")), (54, 50, 4), "{all:#?}");
    let times: Vec<&str> = all.iter().filter_map(|d| d["at"].as_str()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
}
}

/// Every decision of a listing (`GET /api/v1/events?QUERY`), following its
/// cursors (at most 100 pages).
async fn list_all(relay: &Relay, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = format!("/api/v1/events?{query}");
    for _ in 0..100 {
        let (s, b) = relay.get(&path, Some(VIEWER)).await.expect("list");
        assert_eq!(s, 200, "{b}");
        out.extend(b["data"].as_array().cloned().unwrap_or_default());
        match b["next"].as_str() {
            Some(c) => path = format!("/api/v1/events?{query}&cursor={c}"),
            None => return out,
        }
    }
    panic!("more than 100 pages of {query}");
}

on_both_stores! {
/// kill -9 while a digest window is open: after the restart the digest
/// arrives with every member, at about the window's original end.
async fn a_digest_window_survives_kill_9_and_closes_on_its_original_time(backend) {
    let rx = Receiver::start().await;
    let mut relay = backend
        .start(&format!(
            "webhooks:\n{}",
            webhook("Summary", &rx.url("/"), "    digest: {window_s: 4, max_events: 1000}\n")
        ))
        .await;
    let posted = Instant::now();
    for chunk in 0..3 {
        let batch: Vec<Value> = (0..10)
            .map(|i| json!({"type": "finding", "id": format!("k-{chunk}-{i}")}))
            .collect();
        let (s, _) = relay.post("/api/v1/events", Some(INGEST), &Value::Array(batch)).await;
        assert_eq!(s, 202);
    }
    relay.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rx.received().is_empty(), "nothing is sent before the window ends");
    relay.restart().await;
    let got = exactly(&rx, 1, Duration::from_secs(10), Duration::from_millis(1500)).await;
    let at = rx.received()[0].at.duration_since(posted);
    assert!(
        (Duration::from_millis(3500)..Duration::from_millis(6500)).contains(&at),
        "the digest came {at:?} after the events, not at the window's end (4 s)"
    );
    assert_eq!(got[0]["type"], "digest");
    assert_eq!(got[0]["data"]["count"], 30);
    let mut ids: Vec<String> = got[0]["data"]["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| a["id"].as_str().unwrap_or("").to_owned())
        .collect();
    ids.sort();
    let mut want: Vec<String> = (0..3).flat_map(|c| (0..10).map(move |i| format!("k-{c}-{i}"))).collect();
    want.sort();
    assert_eq!(ids, want);
}
}

on_both_stores! {
/// routing.catch_all gets an event no webhook wanted, and an event whose
/// only delivery failed for good — once, after the failure.
async fn the_catch_all_gets_unwanted_events_and_events_whose_deliveries_all_failed(backend) {
    let rx = Receiver::start().await;
    let soc = Receiver::start().await;
    // The first delivery of "doomed" is refused for good (a 400 is final).
    rx.push(Reply::status(400));
    let relay = backend
        .start(&format!(
            "routing:\n  catch_all: soc-fallback\nwebhooks:\n{}{}",
            webhook("Slack", &rx.url("/"), "    filter: {team: blue}\n    retry_count: 0\n"),
            webhook("soc-fallback", &soc.url("/"), "    filter: {team: nobody}\n")
        ))
        .await;
    let (s, b) = relay
        .post("/api/v1/events", Some(INGEST), &json!({"type": "x", "id": "unwanted", "data": {"team": "red"}}))
        .await;
    assert_eq!((s, b["accepted"][0]["deliveries"].as_u64()), (202, Some(1)), "{b}");
    let (s, _) = relay
        .post("/api/v1/events", Some(INGEST), &json!({"type": "x", "id": "doomed", "data": {"team": "blue"}}))
        .await;
    assert_eq!(s, 202);
    let got = exactly(&soc, 2, Duration::from_secs(10), Duration::from_millis(1000)).await;
    let ids: Vec<&str> = got.iter().filter_map(|b| b["id"].as_str()).collect();
    assert_eq!(ids.iter().filter(|i| **i == "unwanted").count(), 1, "{ids:?}");
    assert_eq!(ids.iter().filter(|i| **i == "doomed").count(), 1, "{ids:?}");
    // The catch-all came after the failure was recorded.
    let failed = relay
        .wait_history("slack", Duration::from_secs(5), |h| h.iter().any(|a| a["status"] == "failed"))
        .await;
    assert_eq!(failed.len(), 1, "{failed:#?}");
    // A delivered event never reaches the catch-all.
    relay
        .post("/api/v1/events", Some(INGEST), &json!({"type": "x", "id": "fine", "data": {"team": "blue"}}))
        .await;
    rx.wait_for(2, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(soc.received().len(), 2);
}
}

/// POST /api/v1/test: one test event to every active webhook (filters
/// bypassed), each exactly once; a disabled webhook gets none; the answer
/// holds each webhook's recorded attempt.
#[tokio::test(flavor = "multi_thread")]
async fn test_all_reaches_every_active_webhook_exactly_once() {
    let receivers = [
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    ];
    let relay = Relay::start(&format!(
        "webhooks:\n{}{}{}{}",
        webhook("a", &receivers[0].url("/"), "    filter: {team: never}\n"),
        webhook("b", &receivers[1].url("/"), "    digest: {window_s: 600}\n"),
        webhook("c", &receivers[2].url("/"), "    event_types: [other]\n"),
        webhook("off", &receivers[3].url("/"), "    is_active: false\n"),
    ))
    .await;
    let (s, _) = relay.post("/api/v1/test", Some(INGEST), &json!({})).await;
    assert_eq!(s, 403, "test-all needs the admin role");
    let (s, b) = relay.post("/api/v1/test", Some(ADMIN), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["webhooks"], 3, "{b}");
    let answered: Vec<(&str, &str)> = b["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| {
            (
                r["webhook_id"].as_str().unwrap_or(""),
                r["attempt"]["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        answered,
        [("a", "succeeded"), ("b", "succeeded"), ("c", "succeeded")]
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    for (i, rx) in receivers.iter().enumerate() {
        let got = bodies(rx);
        let want = if i == 3 { 0 } else { 1 };
        assert_eq!(got.len(), want, "receiver {i}: {got:#?}");
        if want == 1 {
            assert_eq!(got[0]["type"], "relay.test");
            assert_eq!(got[0]["id"], b["event_id"]);
        }
    }
}

on_both_stores! {
/// Retention forgets what routing kept about the events it deletes — their
/// repeat marks, digest memberships and closed digest windows — and the
/// dedup windows that ended; a member of a window not yet closed stays, so
/// its digest still has it.
async fn retention_prunes_dedup_and_closed_digests_but_keeps_members_of_an_open_window(backend) {
    use relay::event::{Event, now_ms};
    use relay::store::{DedupKey, DigestMember, NewEvent, Storage};
    let dir = tempfile::tempdir().expect("temp dir");
    let store = backend.open_store(dir.path()).await;
    let new = |id: &str, dedup: bool, digest: bool| {
        let event = Event {
            id: id.into(),
            event_type: "finding".into(),
            time: "2026-01-01T00:00:00Z".into(),
            data: json!({"n": id}).into(),
        };
        NewEvent {
            body: serde_json::to_string(&event).expect("json"),
            event,
            targets: vec![],
            held: vec![],
            decisions: vec![],
            digests: digest
                .then(|| DigestMember {
                    webhook_id: "w".into(),
                    webhook_name: "W".into(),
                    group: "{}".into(),
                    window_ms: 60_000,
                    max_events: 2,
                })
                .into_iter()
                .collect(),
            dedup: dedup.then(|| DedupKey { key: "k".into(), window_ms: 1_000 }),
        }
    };
    // "first" holds the dedup key, "repeat" is counted on it; m1 and m2 fill
    // a window of two (it closes), m3 opens the next one.
    for (id, dedup, digest) in [
        ("first", true, false),
        ("repeat", true, false),
        ("m1", false, true),
        ("m2", false, true),
        ("m3", false, true),
    ] {
        store.accept(vec![new(id, dedup, digest)]).await.expect("accept");
    }
    assert_eq!(store.routing_of("repeat").await.expect("read").deduped_into, Some("first".into()));
    let window = |r: relay::store::RoutingRecord| r.digests.first().map(|(_, d)| d.clone());
    let full = window(store.routing_of("m1").await.expect("read")).expect("m1's window");
    let open = window(store.routing_of("m3").await.expect("read")).expect("m3's window");
    assert_ne!(full, open, "a window of two takes no third member");
    let sealed = store.seal_digest(&full).await.expect("seal").expect("the full window");
    assert_eq!(sealed.members.len(), 2);
    let (closed, _) = store.finish_digest(&full, new(&full, false, false), 0..0).await.expect("finish");
    assert!(closed.is_some(), "the window closed with its digest event");

    let cutoff = now_ms() + 10_000;
    let deleted = store.prune(cutoff).await.expect("prune");
    // Rows: the events first, repeat, m1, m2 and the digest's (5), the
    // repeat's decision and its mark (2), the closed window's two members
    // and the window (3), the ended dedup window (1).
    assert_eq!(deleted, 11, "rows deleted");
    let r = store.routing_of("repeat").await.expect("read");
    assert_eq!((r.deduped_into, r.repeats), (None, 0), "the repeat mark is gone");
    assert_eq!(store.routing_of("first").await.expect("read").repeats, 0);
    assert!(store.routing_of("m1").await.expect("read").digests.is_empty());
    assert_eq!(
        window(store.routing_of("m3").await.expect("read")),
        Some(open.clone()),
        "the open window's member stays"
    );
    let sealed = store.seal_digest(&open).await.expect("seal").expect("the open window");
    let ids: Vec<String> = sealed
        .members
        .iter()
        .map(|body| serde_json::from_str::<Event>(body).expect("a stored body").id)
        .collect();
    assert_eq!(ids, ["m3"], "its digest still reads the member");
    // A new event of the key opens a window of its own (the old one is gone).
    let (a, _) = store.accept(vec![new("again", true, false)]).await.expect("accept");
    assert_eq!(a[0].deduped_into, None);
}
}
