//! The issue-16 outputs through the real relay: PagerDuty, Twilio SMS and
//! voice, ConnectWise, Autotask and HaloPSA destinations, and the Discord,
//! Mattermost and Google Chat formatters. A loopback receiver checks each
//! API's documented request (method, path, auth header form, required
//! fields, content type, limits) and answers its documented codes.

mod common;

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);
const SID: &str = "AC0123456789abcdef0123456789abcdef";

fn event(id: &str, data: Value) -> Value {
    json!({"type": "finding_added", "id": id, "time": "2026-11-22T10:00:00Z", "data": data})
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        body: body.to_string(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        ..Reply::status(status)
    }
}

fn form(r: &Received) -> Vec<(String, String)> {
    url_pairs(&r.body)
}

/// `application/x-www-form-urlencoded` pairs, decoded by hand (the test
/// must not share the plugin's encoder).
fn url_pairs(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    std::str::from_utf8(body)
        .unwrap()
        .split('&')
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (decode(k), decode(v))
        })
        .collect()
}

/// `(status, status_code)` of each recorded attempt of `event_id`, oldest first.
fn attempts_of(history: &[Value], event_id: &str) -> Vec<(String, Option<u64>)> {
    let mut v: Vec<_> = history
        .iter()
        .filter(|a| a["event_id"] == event_id)
        .map(|a| {
            (
                a["status"].as_str().unwrap_or_default().to_owned(),
                a["status_code"].as_u64(),
            )
        })
        .collect();
    v.reverse();
    v
}

fn is_final(history: &[Value], event_id: &str) -> bool {
    history.iter().any(|a| {
        a["event_id"] == event_id && matches!(a["status"].as_str(), Some("succeeded" | "failed"))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn pagerduty_trigger_then_resolve_share_the_dedup_key_and_codes_are_classified() {
    let pd = Receiver::start().await;
    let ok = || {
        reply(
            202,
            json!({"status": "success", "message": "Event processed", "dedup_key": "x"}),
        )
    };
    pd.push(ok());
    pd.push(ok());
    pd.push(Reply {
        headers: vec![("Retry-After".into(), "0".into())],
        ..Reply::status(429)
    });
    pd.push(ok());
    pd.push(reply(
        400,
        json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["'payload.summary' is missing"]}),
    ));
    let yaml = format!(
        r#"delivery: {{ retry_base_ms: 100 }}
incidents: {{ key: "{{{{incident_id}}}}" }}
webhooks:
  - name: PD
    url: {}
    destination: pagerduty
    destination_options: {{ routing_key: R0UTINGKEY0123456789abcdef012345, severity_map: {{ high: critical }} }}
"#,
        pd.url("")
    );
    let relay = Relay::start(&yaml).await;
    let send = |id: &'static str, data: Value| {
        let relay = &relay;
        async move {
            let (status, _) = relay
                .post("/api/v1/events", Some(INGEST), &event(id, data))
                .await;
            assert_eq!(status, 202);
        }
    };
    send("pd-1", json!({"title": "Brute force on VPN", "severity": "high", "incident_id": "INC-7", "host": "vpn-1"})).await;
    pd.wait_for(1, WAIT).await;
    send(
        "pd-2",
        json!({"title": "Brute force on VPN", "status": "resolved", "incident_id": "INC-7"}),
    )
    .await;
    let got = pd.wait_for(2, WAIT).await;
    for r in &got {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/v2/enqueue")
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let (trigger, resolve) = (got[0].json(), got[1].json());
    assert_eq!(trigger["routing_key"], "R0UTINGKEY0123456789abcdef012345");
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["payload"]["summary"], "Brute force on VPN");
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["source"], "vpn-1");
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(trigger["dedup_key"], "INC-7");
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    assert!(resolve.get("payload").is_none(), "{resolve}");

    // 429 is retried, 400 fails for good.
    send("pd-3", json!({"title": "x", "incident_id": "INC-8"})).await;
    relay
        .wait_history("pd", WAIT, |h| is_final(h, "pd-3"))
        .await;
    send("pd-4", json!({"title": "y", "incident_id": "INC-9"})).await;
    let h = relay
        .wait_history("pd", WAIT, |h| is_final(h, "pd-3") && is_final(h, "pd-4"))
        .await;
    assert_eq!(
        attempts_of(&h, "pd-3"),
        [
            ("retrying".into(), Some(429)),
            ("succeeded".into(), Some(202))
        ]
    );
    assert_eq!(attempts_of(&h, "pd-4"), [("failed".into(), Some(400))]);
    let failed = h.iter().find(|a| a["event_id"] == "pd-4").unwrap();
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Event object is invalid"),
        "{failed}"
    );
    assert_eq!(pd.received().len(), 5);
    // The routing key is a secret: viewers never see it.
    let (_, w) = relay
        .get("/api/v1/webhooks/pd", Some(VIEWER))
        .await
        .unwrap();
    assert!(!w.to_string().contains("R0UTINGKEY"), "{w}");
}

#[tokio::test(flavor = "multi_thread")]
async fn twilio_sms_and_voice_post_the_documented_forms_with_basic_auth() {
    let tw = Receiver::start().await;
    tw.push(reply(201, json!({"sid": "SM1", "status": "queued"})));
    tw.push(reply(201, json!({"sid": "SM2", "status": "queued"})));
    tw.push(reply(201, json!({"sid": "CA1", "status": "queued"})));
    tw.push(reply(
        400,
        json!({"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400}),
    ));
    let yaml = format!(
        r#"delivery: {{ retry_base_ms: 100 }}
webhooks:
  - name: SMS
    url: {url}
    event_types: [sms_test]
    destination: twilio_sms
    destination_options: {{ account_sid: {SID}, auth_token: "tw-t0ken", from: "+14155550100", to: ["+14155550111", "+14155550122"] }}
  - name: Voice
    url: {url}
    event_types: [voice_test]
    retry_count: 0
    destination: twilio_voice
    destination_options: {{ account_sid: {SID}, auth_token: "tw-t0ken", from: "+14155550100", to: "+14155550111" }}
"#,
        url = tw.url("")
    );
    let relay = Relay::start(&yaml).await;
    let long = "é".repeat(2000);
    let (s, _) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "sms_test", "id": "sms-1", "data": {"title": long, "severity": "high"}}),
        )
        .await;
    assert_eq!(s, 202);
    let got = tw.wait_for(2, WAIT).await;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{SID}:tw-t0ken"))
    );
    let mut to = Vec::new();
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, format!("/2010-04-01/Accounts/{SID}/Messages.json"));
        assert_eq!(r.header("authorization"), Some(auth.as_str()));
        assert_eq!(
            r.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let f = form(r);
        let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["To", "From", "Body"]);
        assert_eq!(f[1].1, "+14155550100");
        let body = &f[2].1;
        assert_eq!(body.chars().count(), 1600, "Twilio's 1,600-character limit");
        assert!(body.starts_with("[high] éé") && body.ends_with('…'));
        to.push(f[0].1.clone());
    }
    assert_eq!(to, ["+14155550111", "+14155550122"]);

    let (s, _) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "voice_test", "id": "call-1", "data": {"title": "</Say><Dial>+15555550199</Dial> & more"}}),
        )
        .await;
    assert_eq!(s, 202);
    let got = tw.wait_for(3, WAIT).await;
    let call = &got[2];
    assert_eq!(call.path, format!("/2010-04-01/Accounts/{SID}/Calls.json"));
    assert_eq!(call.header("authorization"), Some(auth.as_str()));
    let f = form(call);
    assert_eq!(f[0], ("To".into(), "+14155550111".into()));
    assert_eq!(f[2].0, "Twiml");
    assert_eq!(
        f[2].1,
        "<Response><Say>Security alert. &lt;/Say&gt;&lt;Dial&gt;+15555550199&lt;/Dial&gt; &amp; more.</Say></Response>"
    );

    // Twilio's 400 (code 21211) fails the delivery with Twilio's reason.
    relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "voice_test", "id": "call-2", "data": {"title": "x"}}),
        )
        .await;
    let h = relay
        .wait_history("voice", WAIT, |h| is_final(h, "call-2"))
        .await;
    assert_eq!(attempts_of(&h, "call-2"), [("failed".into(), Some(400))]);
    let failed = h.iter().find(|a| a["event_id"] == "call-2").unwrap();
    assert!(failed.to_string().contains("21211"), "{failed}");
    let (_, w) = relay
        .get("/api/v1/webhooks/sms", Some(VIEWER))
        .await
        .unwrap();
    assert!(!w.to_string().contains("tw-t0ken"), "{w}");
}

/// Posts the three events of one incident (create, follow-up, resolve) to
/// the webhook whose id is `prefix`, and returns what the receiver got.
async fn incident_round(relay: &Relay, rx: &Receiver, prefix: &str) -> Vec<Received> {
    let events = [
        json!({"title": "Ransomware on FS-01", "severity": "critical", "incident_id": "INC-1", "host": "fs-01"}),
        json!({"title": "Ransomware spreads", "severity": "critical", "incident_id": "INC-1"}),
        json!({"title": "Ransomware contained", "status": "resolved", "incident_id": "INC-1"}),
    ];
    for (i, data) in events.into_iter().enumerate() {
        let (s, _) = relay
            .post(
                "/api/v1/events",
                Some(INGEST),
                &event(&format!("{prefix}-{i}"), data),
            )
            .await;
        assert_eq!(s, 202);
        // One at a time: each event's request must see the state the
        // previous one left, which is stored with its attempt record (after
        // the receiver answered), so wait for that record.
        rx.wait_for(i + 1, WAIT).await;
        let id = format!("{prefix}-{i}");
        relay.wait_history(prefix, WAIT, |h| is_final(h, &id)).await;
    }
    rx.received()
}

#[tokio::test(flavor = "multi_thread")]
async fn connectwise_creates_a_ticket_notes_it_and_closes_the_same_ticket_on_resolve() {
    let cw = Receiver::start().await;
    cw.push(reply(
        201,
        json!({"id": 4321, "summary": "x", "board": {"id": 1}}),
    ));
    cw.push(reply(201, json!({"id": 17, "ticketId": 4321, "text": "x"})));
    cw.push(reply(
        200,
        json!({"id": 4321, "status": {"name": "Closed"}}),
    ));
    let yaml = format!(
        r#"incidents: {{ key: "{{{{incident_id}}}}" }}
webhooks:
  - name: CW
    url: {}
    retry_count: 0
    destination: connectwise
    destination_options: {{ company_id: acme, public_key: pubK3y, private_key: "pr1v-K3y", client_id: 6f1c-cid, board: SOC, company: Acme }}
"#,
        cw.url("/v4_6_release/apis/3.0")
    );
    let relay = Relay::start(&yaml).await;
    let got = incident_round(&relay, &cw, "cw").await;
    assert_eq!(got.len(), 3);
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("acme+pubK3y:pr1v-K3y")
    );
    for r in &got {
        assert_eq!(r.header("authorization"), Some(auth.as_str()));
        assert_eq!(r.header("clientid"), Some("6f1c-cid"));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let base = "/v4_6_release/apis/3.0/service/tickets";
    assert_eq!(
        (got[0].method.as_str(), got[0].path.as_str()),
        ("POST", base)
    );
    let create = got[0].json();
    assert_eq!(create["summary"], "[critical] Ransomware on FS-01");
    assert_eq!(create["board"], json!({"name": "SOC"}));
    assert_eq!(create["company"], json!({"identifier": "Acme"}));
    assert!(
        create["initialDescription"]
            .as_str()
            .unwrap()
            .contains("host: fs-01")
    );
    assert_eq!(
        (got[1].method.as_str(), got[1].path.as_str()),
        ("POST", &*format!("{base}/4321/notes"))
    );
    assert!(
        got[1].json()["text"]
            .as_str()
            .unwrap()
            .contains("Ransomware spreads")
    );
    assert_eq!(
        (got[2].method.as_str(), got[2].path.as_str()),
        ("PATCH", &*format!("{base}/4321"))
    );
    assert_eq!(
        got[2].json(),
        json!([{"op": "replace", "path": "status", "value": {"name": "Closed"}}])
    );
    let h = relay
        .wait_history("cw", WAIT, |h| is_final(h, "cw-2"))
        .await;
    for id in ["cw-0", "cw-1", "cw-2"] {
        assert_eq!(attempts_of(&h, id).len(), 1, "{id}");
        assert_eq!(attempts_of(&h, id)[0].0, "succeeded", "{id}");
    }
    // The close forgot the ticket: another resolve has nothing to close and
    // fails without a request.
    relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &event(
                "cw-3",
                json!({"status": "resolved", "incident_id": "INC-1"}),
            ),
        )
        .await;
    let h = relay
        .wait_history("cw", WAIT, |h| is_final(h, "cw-3"))
        .await;
    assert_eq!(attempts_of(&h, "cw-3"), [("failed".into(), None)]);
    assert_eq!(cw.received().len(), 3);
    let (_, w) = relay
        .get("/api/v1/webhooks/cw", Some(VIEWER))
        .await
        .unwrap();
    assert!(!w.to_string().contains("pr1v-K3y"), "{w}");
}

#[tokio::test(flavor = "multi_thread")]
async fn autotask_creates_a_ticket_and_completes_the_same_ticket_on_resolve_after_a_restart() {
    let at = Receiver::start().await;
    at.push(reply(200, json!({"itemId": 9001})));
    at.push(reply(200, json!({"itemId": 31})));
    at.push(reply(200, json!({"itemId": 9001})));
    let yaml = format!(
        r#"incidents: {{ key: "{{{{incident_id}}}}" }}
webhooks:
  - name: AT
    url: {}
    retry_count: 0
    destination: autotask
    destination_options: {{ integration_code: ICODE0000000000000000000001, username: "api@acme.example", secret: "At-s3cret", company_id: 175, queue_id: 29682833 }}
"#,
        at.url("/ATServicesRest")
    );
    let mut relay = Relay::start(&yaml).await;
    let (s, _) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &event(
                "at-0",
                json!({"title": "Phishing", "severity": "high", "incident_id": "INC-5"}),
            ),
        )
        .await;
    assert_eq!(s, 202);
    at.wait_for(1, WAIT).await;
    relay
        .wait_history("at", WAIT, |h| is_final(h, "at-0"))
        .await;
    // The kept ticket id survives a restart (it is in the store).
    relay.restart().await;
    for (i, data) in [
        json!({"title": "Phishing: more mailboxes", "incident_id": "INC-5"}),
        json!({"status": "closed", "incident_id": "INC-5"}),
    ]
    .into_iter()
    .enumerate()
    {
        relay
            .post(
                "/api/v1/events",
                Some(INGEST),
                &event(&format!("at-{}", i + 1), data),
            )
            .await;
        at.wait_for(i + 2, WAIT).await;
    }
    let got = at.received();
    for r in &got {
        assert_eq!(
            r.header("apiintegrationcode"),
            Some("ICODE0000000000000000000001")
        );
        assert_eq!(r.header("username"), Some("api@acme.example"));
        assert_eq!(r.header("secret"), Some("At-s3cret"));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    assert_eq!(
        (got[0].method.as_str(), got[0].path.as_str()),
        ("POST", "/ATServicesRest/V1.0/Tickets")
    );
    let create = got[0].json();
    for field in ["companyID", "queueID", "title", "status", "priority"] {
        assert!(create.get(field).is_some(), "{field} missing: {create}");
    }
    assert_eq!(create["title"], "[high] Phishing");
    assert_eq!(
        (got[1].method.as_str(), got[1].path.as_str()),
        ("POST", "/ATServicesRest/V1.0/Tickets/9001/Notes")
    );
    assert_eq!(
        (got[2].method.as_str(), got[2].path.as_str()),
        ("PATCH", "/ATServicesRest/V1.0/Tickets")
    );
    assert_eq!(got[2].json(), json!({"id": 9001, "status": 5}));
    let (_, w) = relay
        .get("/api/v1/webhooks/at", Some(VIEWER))
        .await
        .unwrap();
    let w = w.to_string();
    assert!(!w.contains("At-s3cret") && !w.contains("ICODE"), "{w}");
}

#[tokio::test(flavor = "multi_thread")]
async fn discord_mattermost_and_google_chat_get_their_documented_shapes_within_limits() {
    let rx = Receiver::start().await;
    let yaml = format!(
        r#"webhooks:
  - {{ name: Discord, url: "{0}", format: discord, retry_count: 0 }}
  - {{ name: Mattermost, url: "{1}", format: mattermost, retry_count: 0 }}
  - {{ name: GChat, url: "{2}", format: google_chat, retry_count: 0 }}
"#,
        rx.url("/discord"),
        rx.url("/mattermost"),
        rx.url("/gchat")
    );
    let relay = Relay::start(&yaml).await;
    let mut data = serde_json::Map::new();
    data.insert(
        "title".into(),
        json!("@everyone <b>SQL</b> injection ".repeat(40)),
    );
    data.insert("severity".into(), json!("critical"));
    data.insert("description".into(), json!("&<>*_".repeat(8000)));
    data.insert("url".into(), json!("https://app.example/f/1"));
    for i in 0..40 {
        data.insert(format!("field_{i:02}"), json!("v".repeat(3000)));
    }
    let (s, _) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &event("fmt-1", Value::Object(data)),
        )
        .await;
    assert_eq!(s, 202);
    let got = rx.wait_for(3, WAIT).await;
    let by_path = |p: &str| {
        got.iter()
            .find(|r| r.path == p)
            .unwrap_or_else(|| panic!("no {p}"))
    };
    let chars = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());

    let d = by_path("/discord");
    assert_eq!(d.header("content-type"), Some("application/json"));
    let d = d.json();
    assert!(chars(&d["content"]) <= 2000);
    let embeds = d["embeds"].as_array().unwrap();
    assert_eq!(embeds.len(), 1);
    let e = &embeds[0];
    let fields = e["fields"].as_array().unwrap();
    assert!(!fields.is_empty() && fields.len() <= 25);
    let total = chars(&e["title"])
        + chars(&e["description"])
        + chars(&e["footer"]["text"])
        + fields
            .iter()
            .map(|f| chars(&f["name"]) + chars(&f["value"]))
            .sum::<usize>();
    assert!(total <= 6000, "embed texts: {total}");
    assert!(chars(&e["title"]) <= 256 && chars(&e["description"]) <= 4096);
    assert!(
        fields
            .iter()
            .all(|f| chars(&f["value"]) <= 1024 && chars(&f["name"]) <= 256)
    );
    assert_eq!(e["url"], "https://app.example/f/1");
    assert_eq!(d["allowed_mentions"], json!({"parse": []}));

    let m = by_path("/mattermost").json();
    assert!(m["text"].as_str().unwrap().starts_with("#### "));
    let a = &m["attachments"][0];
    assert_eq!(a["title_link"], "https://app.example/f/1");
    assert_eq!(a["color"], "#B00020");
    assert!(!a["title"].as_str().unwrap().contains("@everyone"));
    let total = chars(&m["text"])
        + ["fallback", "title", "title_link", "text", "footer"]
            .iter()
            .map(|k| chars(&a[*k]))
            .sum::<usize>()
        + a["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| chars(&f["title"]) + chars(&f["value"]))
            .sum::<usize>();
    assert!(total <= 16_383, "post: {total}");

    let g = by_path("/gchat");
    assert!(g.body.len() <= 32_000, "{}", g.body.len());
    let g = g.json();
    assert!(chars(&g["text"]) <= 4096);
    let card = &g["cardsV2"][0]["card"];
    assert!(
        card["header"]["title"]
            .as_str()
            .unwrap()
            .contains("&lt;b&gt;")
    );
    let widgets = card["sections"][0]["widgets"].as_array().unwrap();
    assert!(widgets.iter().any(|w| w.get("decoratedText").is_some()));
    assert_eq!(
        widgets.last().unwrap()["buttonList"]["buttons"][0]["onClick"]["openLink"]["url"],
        "https://app.example/f/1"
    );
}

fn relay_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(args)
        .output()
        .expect("run relay")
}

#[test]
fn render_verbose_shows_the_connectwise_close_with_its_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("event.json");
    std::fs::write(
        &ev,
        event("ev-9", json!({"title": "Done", "status": "resolved"})).to_string(),
    )
    .unwrap();
    let ev = ev.to_str().unwrap();
    let out = relay_cmd(&[
        "render",
        "--plugin",
        "connectwise",
        "--event",
        ev,
        "--set",
        "company_id=acme",
        "--set",
        "public_key=pubK3y",
        "--set",
        "private_key=pr1v-K3y",
        "--set",
        "client_id=6f1c-cid",
        "--set",
        "board=SOC",
        "--set",
        "company=Acme",
        "--url",
        "https://api-na.myconnectwise.net/v4_6_release/apis/3.0",
        "--incident-state",
        r#"{"ticket":4321}"#,
        "--verbose",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("PATCH https://api-na.myconnectwise.net/v4_6_release/apis/3.0/service/tickets/4321")
    );
    assert!(stdout.contains("\nAuthorization: [redacted]\n"), "{stdout}");
    assert!(stdout.contains("\nclientId: 6f1c-cid\n"), "{stdout}");
    let secret = base64::engine::general_purpose::STANDARD.encode("acme+pubK3y:pr1v-K3y");
    assert!(
        !stdout.contains(&secret) && !stdout.contains("pr1v-K3y"),
        "{stdout}"
    );
    let body = stdout.lines().last().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        json!([{"op": "replace", "path": "status", "value": {"name": "Closed"}}])
    );
    // Without a kept ticket there is nothing to close: a clear error.
    let out = relay_cmd(&[
        "render",
        "--plugin",
        "connectwise",
        "--event",
        ev,
        "--set",
        "company_id=acme",
        "--set",
        "public_key=p",
        "--set",
        "private_key=k",
        "--set",
        "client_id=c",
        "--set",
        "board=SOC",
        "--set",
        "company=Acme",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to close"));
}

#[test]
fn render_works_for_every_new_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("event.json");
    std::fs::write(
        &ev,
        event(
            "ev-1",
            json!({"title": "T", "severity": "high", "incident_id": "I"}),
        )
        .to_string(),
    )
    .unwrap();
    let ev = ev.to_str().unwrap();
    let twilio = [
        "--set",
        "account_sid=AC0123456789abcdef0123456789abcdef",
        "--set",
        "auth_token=t",
        "--set",
        "from=+14155550100",
        "--set",
        "to=+14155550111",
    ];
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("discord", vec![], "\"embeds\""),
        ("mattermost", vec![], "\"attachments\""),
        ("google_chat", vec![], "\"cardsV2\""),
        (
            "pagerduty",
            vec!["--set", "routing_key=rk"],
            "POST https://example.invalid/hook/v2/enqueue",
        ),
        ("twilio_sms", twilio.to_vec(), "/Messages.json"),
        ("twilio_voice", twilio.to_vec(), "/Calls.json"),
        (
            "connectwise",
            vec![
                "--set",
                "company_id=a",
                "--set",
                "public_key=p",
                "--set",
                "private_key=k",
                "--set",
                "client_id=c",
                "--set",
                "board=1",
                "--set",
                "company=1",
            ],
            "/service/tickets",
        ),
        (
            "autotask",
            vec![
                "--set",
                "integration_code=I",
                "--set",
                "username=u",
                "--set",
                "secret=s",
                "--set",
                "company_id=1",
                "--set",
                "queue_id=2",
            ],
            "/V1.0/Tickets",
        ),
        (
            "halopsa",
            vec![],
            "POST https://example.invalid/hook/api/tickets",
        ),
    ];
    for (plugin, sets, needle) in cases {
        let mut args = vec!["render", "--plugin", plugin, "--event", ev, "--verbose"];
        args.extend(sets);
        let out = relay_cmd(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{plugin}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(needle), "{plugin}: {stdout}");
    }
}

#[test]
fn bad_destination_options_are_refused_at_load_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "destination: pagerduty\n    destination_options: { severity_map: { high: urgent }, routing_key: k }",
            "severity_map.high",
        ),
        (
            "destination: pagerduty\n    destination_options: {}",
            "routing_key",
        ),
        (
            "destination: twilio_sms\n    destination_options: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token: t, from: \"+14155550100\", to: [\"+1415\"] }",
            "to[0]",
        ),
        (
            "destination: autotask\n    destination_options: { integration_code: i, username: u, secret: s, company_id: 0, queue_id: 1 }",
            "company_id",
        ),
        (
            "destination: halopsa\n    destination_options: { clientid: 3 }",
            "clientid",
        ),
        ("format: discord\n    options: { colour: red }", "colour"),
    ];
    for (extra, needle) in cases {
        let path = dir.path().join("relay.yaml");
        std::fs::write(
            &path,
            format!(
                "listen: 127.0.0.1:{}\nstorage: {{sqlite: {}}}\nwebhooks:\n  - name: a\n    url: https://example.com/\n    {extra}\n",
                free_port(),
                dir.path().join("r.db").display(),
            ),
        )
        .unwrap();
        let out = relay_cmd(&["serve", "--config", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra}: {err}");
        assert!(err.contains(needle), "{extra}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_0_1_0_destination_file_still_loads_and_delivers_beside_stateful_ones() {
    // splunk_hec is built against the unchanged `destination` world of
    // relay:plugin@0.1.0: loaded from a file under another name, it must be
    // a destination and deliver as before.
    let wasm = std::path::Path::new(relay_builtins::WASM_DIR).join("relay_plugin_splunk_hec.wasm");
    let bytes = std::fs::read(&wasm).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("relay:plugin/deliver@0.1.0"));
    assert!(!text.contains("relay:plugin/deliver-stateful@0.1.0"));
    let plugins = tempfile::tempdir().unwrap();
    std::fs::write(plugins.path().join("legacy_hec.wasm"), &bytes).unwrap();
    let hec = Receiver::start().await;
    let yaml = format!(
        "plugins: {{ dir: {} }}\nincidents: {{ key: \"{{{{incident_id}}}}\" }}\nwebhooks:\n  - name: Legacy\n    url: {}\n    destination: legacy_hec\n    destination_options: {{ token: t0k }}\n",
        plugins.path().display(),
        hec.url("")
    );
    let relay = Relay::start(&yaml).await;
    let (_, list) = relay.get("/api/v1/plugins", Some(ADMIN)).await.unwrap();
    let kinds: Vec<(String, String)> = list["data"]
        .as_array()
        .or(list.as_array())
        .unwrap()
        .iter()
        .filter(|p| ["legacy_hec", "connectwise"].contains(&p["name"].as_str().unwrap_or("")))
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["kind"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(kinds.len(), 2, "{list}");
    assert!(kinds.iter().all(|(_, k)| k == "destination"), "{kinds:?}");
    relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &event("l-1", json!({"title": "T", "incident_id": "I"})),
        )
        .await;
    let got = hec.wait_for(1, WAIT).await;
    assert_eq!(got[0].path, "/services/collector/event");
    assert_eq!(got[0].header("authorization"), Some("Splunk t0k"));
    let h = relay
        .wait_history("legacy", WAIT, |h| is_final(h, "l-1"))
        .await;
    assert_eq!(attempts_of(&h, "l-1"), [("succeeded".into(), Some(200))]);
}

#[tokio::test(flavor = "multi_thread")]
async fn halopsa_gets_a_token_then_creates_the_ticket_and_closes_the_same_ticket_on_resolve() {
    // One loopback server plays Halo's authorisation server and its API.
    let halo = Receiver::start().await;
    halo.push(reply(
        200,
        json!({"access_token": "halo-access-1", "token_type": "Bearer", "expires_in": 3600}),
    ));
    halo.push(reply(
        201,
        json!({"id": 555, "summary": "x", "status_id": 1}),
    ));
    halo.push(reply(
        201,
        json!({"id": 9100, "ticket_id": 555, "note": "x"}),
    ));
    halo.push(reply(201, json!({"id": 555, "status_id": 9})));
    let yaml = format!(
        r#"incidents: {{ key: "{{{{incident_id}}}}" }}
webhooks:
  - name: Halo
    url: {api}
    retry_count: 0
    destination: halopsa
    destination_options: {{ tickettype_id: 21, customer_id: 12, priority_map: {{ critical: 1 }} }}
    auth:
      oauth2:
        token_url: {token}
        client_id: relay-halo
        client_secret: "halo-s3cret"
        scope: all
"#,
        api = halo.url(""),
        token = halo.url("/auth/token")
    );
    let relay = Relay::start(&yaml).await;
    let (s, _) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &event("halo-0", json!({"title": "Ransomware on FS-01", "severity": "critical", "incident_id": "INC-1"})),
        )
        .await;
    assert_eq!(s, 202);
    let got = halo.wait_for(2, WAIT).await;
    // First the client-credentials token request, then the ticket with it.
    assert_eq!(
        (got[0].method.as_str(), got[0].path.as_str()),
        ("POST", "/auth/token")
    );
    let token_form = url_pairs(&got[0].body);
    assert!(
        token_form.contains(&("grant_type".into(), "client_credentials".into())),
        "{token_form:?}"
    );
    assert_eq!(
        (got[1].method.as_str(), got[1].path.as_str()),
        ("POST", "/api/tickets")
    );
    assert_eq!(got[1].header("authorization"), Some("Bearer halo-access-1"));
    assert_eq!(got[1].header("content-type"), Some("application/json"));
    let create = got[1].json();
    let tickets = create.as_array().expect("Halo takes a JSON array");
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0]["summary"], "[critical] Ransomware on FS-01");
    assert_eq!(
        (
            tickets[0]["tickettype_id"].clone(),
            tickets[0]["client_id"].clone(),
            tickets[0]["priority_id"].clone()
        ),
        (json!(21), json!(12), json!(1))
    );
    for (i, data) in [
        json!({"title": "Ransomware spreads", "incident_id": "INC-1"}),
        json!({"title": "Contained", "status": "resolved", "incident_id": "INC-1"}),
    ]
    .into_iter()
    .enumerate()
    {
        relay
            .post(
                "/api/v1/events",
                Some(INGEST),
                &event(&format!("halo-{}", i + 1), data),
            )
            .await;
        halo.wait_for(i + 3, WAIT).await;
    }
    let got = halo.received();
    assert_eq!(got.len(), 4, "one token request for the whole incident");
    assert_eq!(got[2].path, "/api/actions");
    assert_eq!(got[2].json()[0]["ticket_id"], 555);
    assert_eq!(got[3].path, "/api/tickets");
    assert_eq!(got[3].json(), json!([{"id": 555, "status_id": 9}]));
    for r in &got[1..] {
        assert_eq!(r.header("authorization"), Some("Bearer halo-access-1"));
    }
    let h = relay
        .wait_history("halo", WAIT, |h| is_final(h, "halo-2"))
        .await;
    for id in ["halo-0", "halo-1", "halo-2"] {
        assert_eq!(
            attempts_of(&h, id),
            [("succeeded".into(), Some(201))],
            "{id}"
        );
    }
    let (_, w) = relay
        .get("/api/v1/webhooks/halo", Some(VIEWER))
        .await
        .unwrap();
    assert!(!w.to_string().contains("halo-s3cret"), "{w}");
}
