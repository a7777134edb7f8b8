//! Incidents and on-call escalation end to end (DESIGN §19, issue 17): the
//! real binary, real receivers on loopback, short `wait_s`; the arrival
//! times measured at the receivers.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A webhook only escalation chains use: ordinary events lack the
/// `escalation` field every step's event carries, so its filter keeps them out.
fn chain_webhook(name: &str, rx: &Receiver) -> String {
    format!(
        "  - name: {name}\n    url: {}\n    filter: {{ escalation: {{ exists: true }} }}\n",
        rx.url("/")
    )
}

/// relay.yaml for the seed's sequence: sms-alice + voice-alice, then
/// sms-bob, then soc, `wait_s` between them, `repeat` times more, no phone
/// call for a resolved incident.
fn chain(rx: [&Receiver; 4], wait_s: u64, repeat: u32) -> String {
    format!(
        r#"incidents:
  key: "{{{{incident_id}}}}"
  resolved_when: {{ status: resolved }}
escalations:
  - name: on-call
    match: {{ severity: {{ at_least: high }} }}
    steps:
      - {{ notify: [sms-alice, voice-alice], wait_s: {wait_s} }}
      - {{ notify: [sms-bob], wait_s: {wait_s} }}
      - {{ notify: [soc], wait_s: {wait_s} }}
    repeat: {repeat}
    skip: {{ voice-alice: {{ status: resolved }} }}
webhooks:
{}{}{}{}"#,
        chain_webhook("sms-alice", rx[0]),
        chain_webhook("voice-alice", rx[1]),
        chain_webhook("sms-bob", rx[2]),
        chain_webhook("soc", rx[3]),
    )
}

/// `N` receivers on loopback.
async fn receivers<const N: usize>() -> [Receiver; N] {
    let mut all = Vec::with_capacity(N);
    for _ in 0..N {
        all.push(Receiver::start().await);
    }
    all.try_into()
        .unwrap_or_else(|_| unreachable!("exactly N receivers"))
}

async fn post_event(relay: &Relay, id: &str, data: Value) {
    let (s, b) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "finding_added", "id": id, "data": data}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
}

/// The one incident the relay lists, waiting until there is one.
async fn only_incident(relay: &Relay) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, b) = relay
            .get("/api/v1/incidents", Some(VIEWER))
            .await
            .expect("incidents");
        assert_eq!(s, 200, "{b}");
        let data = b["data"].as_array().cloned().unwrap_or_default();
        if !data.is_empty() {
            assert_eq!(data.len(), 1, "{data:#?}");
            return data[0].clone();
        }
        assert!(Instant::now() < deadline, "no incident was opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn incident(relay: &Relay, id: &str) -> Value {
    let (s, b) = relay
        .get(&format!("/api/v1/incidents/{id}"), Some(VIEWER))
        .await
        .expect("incident");
    assert_eq!(s, 200, "{b}");
    b
}

/// Seconds between two arrivals.
fn gap(a: &Received, b: &Received) -> f64 {
    b.at.duration_since(a.at).as_secs_f64()
}

fn assert_gap(what: &str, a: &Received, b: &Received, want_s: f64) {
    let g = gap(a, b);
    eprintln!("{what}: {g:.3} s (want {want_s} s)");
    assert!(
        (g - want_s).abs() <= 1.0,
        "{what}: {g:.2} s apart, want {want_s} s ± 1 s"
    );
}

/// The escalation block of a step's body.
fn step_of(r: &Received) -> (u64, u64) {
    let b = r.json();
    let e = &b["data"]["escalation"];
    (
        e["step"]
            .as_u64()
            .unwrap_or_else(|| panic!("no escalation step in {b}")),
        e["round"]
            .as_u64()
            .unwrap_or_else(|| panic!("no escalation round in {b}")),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_three_step_chain_nobody_acks_reaches_the_receivers_in_order_with_the_waits_then_repeats_once()
 {
    let rx: [Receiver; 4] = receivers().await;
    let relay = Relay::start(&chain([&rx[0], &rx[1], &rx[2], &rx[3]], 2, 1)).await;
    post_event(
        &relay,
        "ev-1",
        json!({"incident_id": "INC-1", "severity": "critical"}),
    )
    .await;
    let t = Duration::from_secs(20);
    let alice = rx[0].wait_for(2, t).await;
    let voice = rx[1].wait_for(2, t).await;
    let bob = rx[2].wait_for(2, t).await;
    let soc = rx[3].wait_for(2, t).await;
    // Order and waits: alice+voice, 2 s, bob, 2 s, soc, 2 s, then again.
    assert_gap("voice with alice", &alice[0], &voice[0], 0.0);
    assert_gap("bob after alice", &alice[0], &bob[0], 2.0);
    assert_gap("soc after bob", &bob[0], &soc[0], 2.0);
    assert_gap("the repeat after soc", &soc[0], &alice[1], 2.0);
    assert_gap("bob's repeat", &alice[1], &bob[1], 2.0);
    assert_gap("soc's repeat", &bob[1], &soc[1], 2.0);
    assert_eq!(step_of(&alice[0]), (1, 0));
    assert_eq!(step_of(&bob[0]), (2, 0));
    assert_eq!(step_of(&soc[0]), (3, 0));
    assert_eq!(step_of(&alice[1]), (1, 1));
    assert_eq!(step_of(&soc[1]), (3, 1));
    // The chain ends after one repeat: nothing more comes.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    for (i, r) in rx.iter().enumerate() {
        assert_eq!(
            r.received().len(),
            2,
            "receiver {i} got more than two steps"
        );
    }
    let listed = only_incident(&relay).await;
    assert_eq!(listed["state"], "open");
    assert_eq!(listed["steps_run"], 6);
    assert_eq!(listed["next_step_at"], Value::Null);
    let detail = incident(&relay, listed["id"].as_str().unwrap_or_default()).await;
    let steps = detail["steps"].as_array().cloned().unwrap_or_default();
    let shape: Vec<(u64, u64, usize)> = steps
        .iter()
        .map(|s| {
            (
                s["step"].as_u64().unwrap_or(0),
                s["round"].as_u64().unwrap_or(9),
                s["deliveries"].as_array().map_or(0, Vec::len),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (1, 0, 2),
            (2, 0, 1),
            (3, 0, 1),
            (1, 1, 2),
            (2, 1, 1),
            (3, 1, 1)
        ]
    );
    assert_eq!(relay.metric("relay_escalation_steps_total").await, Some(6));
    assert_eq!(relay.metric("relay_incidents_open").await, Some(1));
}

on_both_stores! {
/// Ten events with one incident key are one incident: the first opens it
/// and starts the chain, the nine others join it and start nothing.
async fn ten_events_of_one_incident_start_one_chain(backend) {
    let rx: [Receiver; 4] = receivers().await;
    let relay = backend.start(&chain([&rx[0], &rx[1], &rx[2], &rx[3]], 60, 0)).await;
    for i in 0..10 {
        post_event(&relay, &format!("ev-{i}"), json!({"incident_id": "INC-10", "severity": "high"})).await;
    }
    rx[0].wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx[0].received().len(), 1, "one chain, one first step");
    assert_eq!(rx[1].received().len(), 1);
    assert_eq!(rx[2].received().len(), 0, "step 2 waits 60 s");
    let listed = only_incident(&relay).await;
    assert_eq!(listed["events"], 10);
    assert_eq!(listed["key"], "INC-10");
    assert_eq!(listed["steps_run"], 1);
    let detail = incident(&relay, listed["id"].as_str().unwrap_or_default()).await;
    let ids: Vec<String> = (0..10).map(|i| format!("ev-{i}")).collect();
    assert_eq!(detail["event_ids"], json!(ids));
    assert_eq!(detail["steps"].as_array().map(Vec::len), Some(1));
    // An event below the policy's match opens no incident of its own.
    post_event(&relay, "low-1", json!({"incident_id": "INC-11", "severity": "low"})).await;
    let (_, all) = relay.get("/api/v1/incidents", Some(VIEWER)).await.expect("list");
    assert_eq!(all["data"].as_array().map(Vec::len), Some(1), "{all}");
}
}

on_both_stores! {
/// A resolving event mid-chain stops it: step 2 and 3 are never sent; the
/// webhooks notified so far hear of the resolution, except the voice call
/// that `skip` keeps out for resolved incidents.
async fn a_resolving_event_mid_chain_stops_it_and_skip_keeps_the_voice_call_out(backend) {
    let rx: [Receiver; 4] = receivers().await;
    let relay = backend.start(&chain([&rx[0], &rx[1], &rx[2], &rx[3]], 3, 0)).await;
    post_event(&relay, "open-1", json!({"incident_id": "INC-R", "severity": "critical", "status": "live"})).await;
    rx[0].wait_for(1, Duration::from_secs(10)).await;
    rx[1].wait_for(1, Duration::from_secs(10)).await;
    post_event(&relay, "close-1", json!({"incident_id": "INC-R", "status": "resolved"})).await;
    let alice = rx[0].wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(alice[1].json()["data"]["status"], "resolved");
    assert_eq!(alice[1].json()["data"]["escalation"]["kind"], "resolved");
    // Past step 2's due time: nothing more anywhere.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    assert_eq!(rx[0].received().len(), 2);
    assert_eq!(rx[1].received().len(), 1, "no phone call for the resolved incident");
    assert_eq!(rx[2].received().len(), 0, "step 2 never sent");
    assert_eq!(rx[3].received().len(), 0, "step 3 never sent");
    let listed = only_incident(&relay).await;
    assert_eq!(listed["state"], "resolved");
    assert!(listed["resolved_at"].is_string(), "{listed}");
    let detail = incident(&relay, listed["id"].as_str().unwrap_or_default()).await;
    let steps = detail["steps"].as_array().cloned().unwrap_or_default();
    assert_eq!(steps.len(), 2, "{steps:#?}");
    assert_eq!(steps[1]["kind"], "resolved");
    assert_eq!(steps[1]["skipped"], json!(["voice-alice"]));
    // A later event of the key opens a new incident (the old one is closed).
    post_event(&relay, "open-2", json!({"incident_id": "INC-R", "severity": "critical"})).await;
    let (_, all) = relay.get("/api/v1/incidents", Some(VIEWER)).await.expect("list");
    assert_eq!(all["data"].as_array().map(Vec::len), Some(2), "{all}");
}
}

/// kill -9 while a step waits: after the restart the next step fires once,
/// at its original due time.
#[tokio::test(flavor = "multi_thread")]
async fn kill9_during_a_wait_the_next_step_fires_once_on_its_original_time() {
    let rx: [Receiver; 4] = receivers().await;
    let mut relay = Relay::start(&chain([&rx[0], &rx[1], &rx[2], &rx[3]], 4, 0)).await;
    post_event(
        &relay,
        "ev-k",
        json!({"incident_id": "INC-K", "severity": "critical"}),
    )
    .await;
    let alice = rx[0].wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    relay.kill9();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    relay.spawn().await;
    let bob = rx[2].wait_for(1, Duration::from_secs(10)).await;
    assert_gap(
        "bob after alice across the restart",
        &alice[0],
        &bob[0],
        4.0,
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx[2].received().len(), 1, "step 2 fired once");
    assert_eq!(rx[0].received().len(), 1, "step 1 was not repeated");
}

/// kill -9 right after a step's deliveries were committed (the receiver
/// already has step 1): after the restart step 1 is not run again — at most
/// its in-flight attempt is resent, with the same event id — and step 2
/// runs once.
#[tokio::test(flavor = "multi_thread")]
async fn kill9_right_after_a_step_was_committed_does_not_run_it_twice() {
    let rx: [Receiver; 4] = receivers().await;
    let mut relay = Relay::start(&chain([&rx[0], &rx[1], &rx[2], &rx[3]], 2, 0)).await;
    post_event(
        &relay,
        "ev-c",
        json!({"incident_id": "INC-C", "severity": "critical"}),
    )
    .await;
    rx[0].wait_for(1, Duration::from_secs(10)).await;
    relay.kill9();
    relay.spawn().await;
    rx[2].wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let alice = rx[0].received();
    let resent = alice.len() - 1;
    assert!(resent <= 1, "step 1 reached alice {} times", alice.len());
    let ids: std::collections::HashSet<String> = alice
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "a resend carries the same step event: {ids:?}"
    );
    assert_eq!(rx[2].received().len(), 1, "step 2 once");
    let listed = only_incident(&relay).await;
    let detail = incident(&relay, listed["id"].as_str().unwrap_or_default()).await;
    let seqs: Vec<u64> = detail["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["seq"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(seqs, [0, 1, 2], "each step recorded once");
    eprintln!("in-flight resends of step 1 after kill -9: {resent}");
}

on_both_stores! {
/// An acknowledgement after step 1 stops the chain: steps 2 and 3 are never
/// sent, the incident shows who acknowledged and when, a second ack is a
/// 409 and a viewer may not ack.
async fn an_ack_after_step_1_stops_the_chain(backend) {
    let rx: [Receiver; 4] = receivers().await;
    let relay = backend.start(&chain([&rx[0], &rx[1], &rx[2], &rx[3]], 2, 1)).await;
    post_event(&relay, "ev-a", json!({"incident_id": "INC-A", "severity": "critical"})).await;
    rx[0].wait_for(1, Duration::from_secs(10)).await;
    let id = only_incident(&relay).await["id"].as_str().unwrap_or_default().to_owned();
    let path = format!("/api/v1/incidents/{id}/ack");
    let (s, _) = relay.post(&path, Some(VIEWER), &json!({})).await;
    assert_eq!(s, 403);
    let (s, b) = relay.post(&path, Some(ADMIN), &json!({"by": "alice"})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["state"], "acknowledged");
    assert_eq!(b["acknowledged_by"], "alice");
    assert!(b["acknowledged_at"].is_string(), "{b}");
    let (s, b) = relay.post(&path, Some(ADMIN), &json!({})).await;
    assert_eq!(s, 409, "{b}");
    // Past steps 2's and 3's due times: nothing more.
    tokio::time::sleep(Duration::from_millis(5000)).await;
    assert_eq!(rx[0].received().len(), 1);
    assert_eq!(rx[2].received().len(), 0, "step 2 never sent");
    assert_eq!(rx[3].received().len(), 0, "step 3 never sent");
    let detail = incident(&relay, &id).await;
    assert_eq!(detail["steps"].as_array().map(Vec::len), Some(1));
    assert_eq!(detail["next_step_at"], Value::Null);
    // A later event of the key joins the acknowledged incident, starts nothing.
    post_event(&relay, "ev-a2", json!({"incident_id": "INC-A", "severity": "critical"})).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(rx[0].received().len(), 1);
    assert_eq!(incident(&relay, &id).await["events"], 2);
}
}

/// relay.yaml of the ack-link tests: the seed's chain whose SMS carries
/// `{{ack_url}}`, plus a chat webhook that gets every event of the
/// incident with its link, links lasting `ttl_s`.
fn chain_with_links(rx: [&Receiver; 5], wait_s: u64, ttl_s: u64) -> String {
    let base = chain([rx[0], rx[1], rx[2], rx[3]], wait_s, 0);
    let base = base.replacen(
        "  - name: sms-alice\n",
        "  - name: sms-alice\n    body: { text: \"Incident: ack at {{ack_url}}\", escalation: \"{{escalation}}\" }\n",
        1,
    );
    format!(
        "{}  - name: chat\n    url: {}\n    body: {{ text: \"{{{{id}}}}: {{{{ack_url}}}}\" }}\n",
        base.replacen(
            "incidents:\n",
            &format!(
                "incidents:\n  ack: {{ base_url: \"https://relay.example.com/\", secret: \"ack-s3cret-0123\", ttl_s: {ttl_s} }}\n"
            ),
            1,
        ),
        rx[4].url("/")
    )
}

/// The relay path of the ack link in a received body's `text` (after the
/// base URL), checking the link is the configured base URL's.
fn link_path(r: &Received) -> String {
    let text = r.json()["text"].as_str().unwrap_or_default().to_owned();
    let at = text
        .find("https://relay.example.com/ui/ack/")
        .unwrap_or_else(|| panic!("no ack link in {text:?}"));
    let path = text[at + "https://relay.example.com".len()..].to_owned();
    assert!(
        !text.contains("ack-s3cret"),
        "the secret is in a link: {text}"
    );
    path
}

async fn page(relay: &Relay, method: &str, path: &str) -> (u16, String) {
    let (s, h, body) = raw_request(method, &relay.url(path), &[], None).await;
    if s < 500 {
        assert_eq!(
            h.get("content-type").and_then(|v| v.to_str().ok()),
            Some("text/html; charset=utf-8"),
            "{method} {path}: {body}"
        );
        let csp = h
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(csp.contains("script-src 'self'"), "{csp}");
    }
    assert!(!body.contains("<script>"), "inline script on {path}");
    (s, body)
}

on_both_stores! {
/// The ack link (issue 17 "Must show"): every delivery of the incident
/// carries a signed link; GET shows a confirmation page and acknowledges
/// nothing; POST acknowledges once (who: `link`) and stops the chain; a
/// second POST of the same link is refused with a clear page.
async fn an_ack_link_get_does_not_ack_post_acks_once_and_stops_the_chain(backend) {
    let rx: [Receiver; 5] = receivers().await;
    let relay = backend
        .start(&chain_with_links([&rx[0], &rx[1], &rx[2], &rx[3], &rx[4]], 3, 600))
        .await;
    post_event(&relay, "ev-l", json!({"incident_id": "INC-L", "severity": "critical"})).await;
    let sms = rx[0].wait_for(1, Duration::from_secs(10)).await;
    let link = link_path(&sms[0]);
    // The chat webhook got the ordinary event, with a link of its own.
    let chat = rx[4].wait_for(1, Duration::from_secs(10)).await;
    let chat_link = link_path(&chat[0]);
    assert!(chat[0].json()["text"].as_str().unwrap_or_default().starts_with("ev-l: "));
    assert_ne!(chat_link, link, "each delivery gets its own link");
    // The voice webhook names no ack_url: its body has none.
    let voice = rx[1].wait_for(1, Duration::from_secs(10)).await;
    assert!(voice[0].json()["data"].get("ack_url").is_none(), "{}", voice[0].json());
    let id = only_incident(&relay).await["id"].as_str().unwrap_or_default().to_owned();
    assert!(link.starts_with(&format!("/ui/ack/{id}.")), "{link}");

    // GET (a link preview, a mail scanner): a page with a form, no ack.
    for _ in 0..2 {
        let (s, body) = page(&relay, "GET", &link).await;
        assert_eq!(s, 200, "{body}");
        assert!(body.contains("Acknowledge this incident?"), "{body}");
        assert!(body.contains("<form method=\"post\""), "{body}");
    }
    assert_eq!(incident(&relay, &id).await["state"], "open");

    let (s, body) = page(&relay, "POST", &link).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("Acknowledged: the escalation stopped."), "{body}");
    let detail = incident(&relay, &id).await;
    assert_eq!(detail["state"], "acknowledged");
    assert_eq!(detail["acknowledged_by"], "link");

    // The same link again: refused, and says why.
    let (s, body) = page(&relay, "POST", &link).await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("This link was used already"), "{body}");
    // Another link of the incident finds it acknowledged already.
    let (s, body) = page(&relay, "POST", &chat_link).await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("already acknowledged (by link)"), "{body}");

    // Past step 2's due time (3 s after step 1): nothing more was sent.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    assert_eq!(rx[0].received().len(), 1);
    assert_eq!(rx[2].received().len(), 0, "step 2 never sent");
    assert_eq!(rx[3].received().len(), 0, "step 3 never sent");
    assert_eq!(incident(&relay, &id).await["steps"].as_array().map(Vec::len), Some(1));
}
}

/// A link with a changed signature, id or expiry is refused (403) and an
/// expired one (410), each with a page saying why; neither acknowledges.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_or_expired_ack_link_is_refused_with_a_clear_page() {
    let rx: [Receiver; 5] = receivers().await;
    let relay = Relay::start(&chain_with_links(
        [&rx[0], &rx[1], &rx[2], &rx[3], &rx[4]],
        60,
        2,
    ))
    .await;
    post_event(
        &relay,
        "ev-x",
        json!({"incident_id": "INC-X", "severity": "critical"}),
    )
    .await;
    let sms = rx[0].wait_for(1, Duration::from_secs(10)).await;
    let link = link_path(&sms[0]);
    let id = only_incident(&relay).await["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let mut flipped = link.clone();
    let last = flipped.pop().unwrap_or('0');
    flipped.push(if last == '0' { '1' } else { '0' });
    let parts: Vec<&str> = link.trim_start_matches("/ui/ack/").split('.').collect();
    assert_eq!(parts.len(), 4, "{link}");
    let longer = format!(
        "/ui/ack/{}.{}.{}.{}",
        parts[0],
        parts[1].parse::<i64>().unwrap_or(0) + 3600,
        parts[2],
        parts[3]
    );
    let other = link.replacen(&id, "00000000-0000-7000-8000-000000000000", 1);
    for forged in [&flipped, &longer, &other] {
        for method in ["GET", "POST"] {
            let (s, body) = page(&relay, method, forged).await;
            assert_eq!(s, 403, "{method} {forged}: {body}");
            assert!(body.contains("signature is not valid"), "{body}");
        }
    }
    let (s, body) = page(&relay, "POST", "/ui/ack/not-a-token").await;
    assert_eq!(s, 404, "{body}");
    assert_eq!(incident(&relay, &id).await["state"], "open");

    // ttl_s 2: past it, the genuine link is refused as expired.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let (s, body) = page(&relay, "POST", &link).await;
    assert_eq!(s, 410, "{body}");
    assert!(body.contains("the link expired"), "{body}");
    let detail = incident(&relay, &id).await;
    assert_eq!(detail["state"], "open");
    assert_eq!(detail["acknowledged_by"], Value::Null);
    assert!(
        !relay.logs().contains("ack-s3cret"),
        "the secret is in the log"
    );
    assert!(
        !relay.logs().contains(&parts[3][..16]),
        "a signature is in the log"
    );
}

/// PagerDuty's v3 webhook as PagerDuty sends it, signed with `secret`.
fn pd_webhook(event_type: &str, incident_key: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"event": {
        "id": "01DEN3Z8YJ5DC5K8Q2M0Z5MJXV",
        "event_type": event_type,
        "resource_type": "incident",
        "occurred_at": "2026-11-28T12:00:00.000Z",
        "agent": {"id": "PLH1HKV", "summary": "Alice Oncall", "type": "user_reference"},
        "data": {"id": "Q1ABC", "type": "incident", "number": 7, "status": "acknowledged",
                 "incident_key": incident_key, "title": "finding"}
    }}))
    .unwrap_or_default()
}

fn pd_signature(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("any key size"));
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post_pd(relay: &Relay, signature: &str, body: Vec<u8>) -> (u16, Value) {
    let (s, _, text) = raw_request(
        "POST",
        &relay.url("/api/v1/incidents/pagerduty"),
        &[
            ("content-type", "application/json"),
            ("x-pagerduty-signature", signature),
        ],
        Some(body.into()),
    )
    .await;
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

on_both_stores! {
/// Inbound PagerDuty acknowledgement: a correctly signed
/// `incident.acknowledged` acknowledges the relay incident whose key is the
/// PagerDuty incident's `incident_key` and stops the chain; a bad signature
/// is refused 401 and acks nothing; another event type is ignored (2xx).
async fn a_signed_pagerduty_acknowledgement_acks_the_incident_and_a_bad_signature_nothing(backend) {
    let rx: [Receiver; 4] = receivers().await;
    let yaml = chain([&rx[0], &rx[1], &rx[2], &rx[3]], 3, 0).replacen(
        "incidents:\n",
        "incidents:\n  pagerduty: { secrets: [\"pd-old-secret\", \"pd-s3cret\"] }\n",
        1,
    );
    let relay = backend.start(&yaml).await;
    post_event(&relay, "ev-p", json!({"incident_id": "INC-PD", "severity": "critical"})).await;
    rx[0].wait_for(1, Duration::from_secs(10)).await;
    let id = only_incident(&relay).await["id"].as_str().unwrap_or_default().to_owned();

    let ack = pd_webhook("incident.acknowledged", "INC-PD");
    for bad in [
        String::new(),
        pd_signature("wrong-secret", &ack),
        pd_signature("pd-s3cret", &pd_webhook("incident.acknowledged", "INC-OTHER")),
    ] {
        let (s, b) = post_pd(&relay, &bad, ack.clone()).await;
        assert_eq!(s, 401, "{b}");
    }
    assert_eq!(incident(&relay, &id).await["state"], "open");

    let other = pd_webhook("incident.resolved", "INC-PD");
    let (s, b) = post_pd(&relay, &pd_signature("pd-s3cret", &other), other).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["acknowledged"], false);
    assert_eq!(incident(&relay, &id).await["state"], "open");

    // Signed (PagerDuty lists one signature per active secret).
    let sig = format!("v1=00, {}", pd_signature("pd-s3cret", &ack));
    let (s, b) = post_pd(&relay, &sig, ack.clone()).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["acknowledged"], true, "{b}");
    let detail = incident(&relay, &id).await;
    assert_eq!(detail["state"], "acknowledged");
    assert_eq!(detail["acknowledged_by"], "pagerduty: Alice Oncall");
    // PagerDuty's retry of the same webhook changes nothing.
    let (s, b) = post_pd(&relay, &sig, ack).await;
    assert_eq!((s, &b["acknowledged"]), (200, &json!(false)), "{b}");

    tokio::time::sleep(Duration::from_millis(4000)).await;
    assert_eq!(rx[2].received().len(), 0, "step 2 never sent");
}
}

async fn delete(relay: &Relay, path: &str, token: &str) -> u16 {
    request("DELETE", &relay.url(path), Some(token), None)
        .await
        .map(|(s, _)| s)
        .unwrap_or(0)
}

on_both_stores! {
/// Escalation policies through the API: a viewer reads, only an admin
/// writes; a policy is checked like relay.yaml's (422 naming the field); a
/// created one runs (an incident of its match starts its chain), survives a
/// restart (stored) and is gone once deleted.
async fn escalation_policies_through_the_api_are_checked_stored_and_run(backend) {
    let rx: [Receiver; 4] = receivers().await;
    // The seed's webhooks and incidents, but no policy in relay.yaml.
    let yaml = chain([&rx[0], &rx[1], &rx[2], &rx[3]], 60, 0);
    let cut = yaml.find("escalations:").unwrap_or(0);
    let hooks = yaml.find("webhooks:").unwrap_or(yaml.len());
    let yaml = format!("{}{}", &yaml[..cut], &yaml[hooks..]);
    let mut relay = backend.start(&yaml).await;
    let policy = json!({
        "name": "api-on-call",
        "match": {"severity": {"at_least": "high"}},
        "steps": [{"notify": ["sms-alice"], "wait_s": 60}, {"notify": ["soc"]}],
        "skip": {"sms-alice": {"status": "resolved"}}
    });
    let (s, b) = relay.post("/api/v1/escalations", Some(VIEWER), &policy).await;
    assert_eq!(s, 403, "{b}");
    for (bad, field) in [
        (json!({"name": "x"}), "steps"),
        (json!({"name": "x", "steps": [{"notify": ["nobody"]}]}), "steps[0].notify[0]"),
        (json!({"name": "x", "steps": [{"notify": ["soc"], "wait_s": 9_999_999}]}), "steps[0].wait_s"),
        (json!({"name": "x", "steps": [{"notify": ["soc"]}], "colour": "red"}), "colour"),
        (json!({"name": "x", "steps": [{"notify": ["soc"]}], "skip": {"ghost": {"a": 1}}}), "skip.ghost"),
    ] {
        let (s, b) = relay.post("/api/v1/escalations", Some(ADMIN), &bad).await;
        assert_eq!(s, 422, "{bad}: {b}");
        let message = b["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{bad}: {message:?} names no {field}");
    }
    let (s, b) = relay.post("/api/v1/escalations", Some(ADMIN), &policy).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["source"], "api");
    let (s, b) = relay.post("/api/v1/escalations", Some(ADMIN), &policy).await;
    assert_eq!(s, 409, "{b}");
    let (s, listed) = relay.get("/api/v1/escalations", Some(VIEWER)).await.expect("list");
    assert_eq!(s, 200, "{listed}");
    let data = listed["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(data.len(), 1, "{listed}");
    assert_eq!(data[0]["name"], "api-on-call");
    assert_eq!(data[0]["steps"][0]["notify"], json!(["sms-alice"]));

    // It runs: a high event opens an incident and its first step.
    post_event(&relay, "ev-api", json!({"incident_id": "INC-API", "severity": "high"})).await;
    let got = rx[0].wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["data"]["escalation"]["policy"], "api-on-call");
    assert_eq!(only_incident(&relay).await["policy"], "api-on-call");

    // Stored: still there after a restart.
    relay.restart().await;
    let (_, listed) = relay.get("/api/v1/escalations", Some(VIEWER)).await.expect("list");
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");

    assert_eq!(delete(&relay, "/api/v1/escalations/api-on-call", VIEWER).await, 403);
    assert_eq!(delete(&relay, "/api/v1/escalations/api-on-call", ADMIN).await, 204);
    assert_eq!(delete(&relay, "/api/v1/escalations/api-on-call", ADMIN).await, 404);
    let (_, listed) = relay.get("/api/v1/escalations", Some(VIEWER)).await.expect("list");
    assert_eq!(listed["data"], json!([]), "{listed}");
    // Without a policy, a new incident starts no chain.
    post_event(&relay, "ev-api-2", json!({"incident_id": "INC-API-2", "severity": "high"})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // (The kill may resend step 1's in-flight attempt: at-least-once.)
    for r in rx[0].received() {
        assert_eq!(r.json()["data"]["incident_id"], "INC-API", "{}", r.json());
    }
    let (_, all) = relay.get("/api/v1/incidents", Some(VIEWER)).await.expect("list");
    assert_eq!(all["data"].as_array().map(Vec::len), Some(1), "{all}");
}
}

on_both_stores! {
/// Incident retention: incidents resolved before the cutoff go with their
/// event links and used ack-link nonces; open ones and recent ones stay.
async fn resolved_incidents_older_than_the_retention_are_pruned_with_their_rows(backend) {
    use relay::store::{IncidentEvent, IncidentOpen, LinkAck, Storage};
    let dir = tempfile::tempdir().expect("temp dir");
    let store = backend.open_store(dir.path()).await;
    let now = relay::event::now_ms();
    let old = now - 40 * 86_400_000;
    let part = |key: &str, event: &str, at_ms: i64, open: bool, resolves: bool| IncidentEvent {
        key: key.into(),
        event_id: event.into(),
        at_ms,
        open: open.then(|| IncidentOpen {
            id: format!("inc-{key}"),
            policy: None,
            first_due_ms: None,
        }),
        resolves,
    };
    for p in [
        part("a", "a1", old, true, false),
        part("a", "a2", old + 1_000, false, true),
        part("b", "b1", old, true, false),
        part("c", "c1", now, true, false),
        part("c", "c2", now, false, true),
    ] {
        store.incident_event(p).await.expect("incident event");
    }
    let used = store.ack_incident_by_link("inc-a", "nonce-a", "link", now).await.expect("ack");
    assert!(matches!(used, LinkAck::Done { changed: false, .. }), "{used:?}");
    assert_eq!(store.incident_of_event("a1").await.expect("read"), Some("inc-a".into()));

    let cutoff = now - 30 * 86_400_000;
    assert_eq!(relay::store::prune_incidents(&store, cutoff).await.expect("prune"), 1);
    assert_eq!(store.get_incident("inc-a").await.expect("read"), None);
    assert_eq!(store.incident_of_event("a1").await.expect("read"), None);
    assert_eq!(store.incident_of_event("a2").await.expect("read"), None);
    // Its used nonce went too: the link now finds no incident.
    assert_eq!(
        store.ack_incident_by_link("inc-a", "nonce-a", "link", now).await.expect("ack"),
        LinkAck::Unknown
    );
    let b = store.get_incident("inc-b").await.expect("read").expect("open one stays");
    assert_eq!(b.incident.state, "open");
    let c = store.get_incident("inc-c").await.expect("read").expect("recent one stays");
    assert_eq!(c.event_ids, ["c1", "c2"]);
    assert_eq!(relay::store::prune_incidents(&store, cutoff).await.expect("prune"), 0);
}
}
