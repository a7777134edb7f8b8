//! The spine end to end: the real binary, a real receiver, real SQLite.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use serde_json::{Value, json};

fn webhook_yaml(name: &str, url: &str, extra: &str) -> String {
    format!("  - name: {name}\n    url: {url}\n{extra}")
}

#[tokio::test(flavor = "multi_thread")]
async fn posted_event_arrives_with_template_method_headers_and_valid_json() {
    let rx = Receiver::start().await;
    let extra = format!(
        "event_types:\n  finding_added: A new finding\nwebhooks:\n{}",
        webhook_yaml(
            "Templated",
            &rx.url("/hook"),
            r#"    method: PUT
    headers: { X-Tenant: "{{tenant_name}}", X-Static: fixed }
    body:
      text: "New {{type}}: {{title}} ({{severity}})"
      title: "{{title}}"
      cvss: "{{finding.cvss}}"
      finding: "{{finding}}"
      missing: "{{nope}}"
      static: [1, true]
"#
        )
    );
    let relay = Relay::start(&extra).await;
    let hostile = "quote \" backslash \\ newline \n tab \t unicode ✓ 🚨 </script>";
    let (status, body) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "finding_added", "id": "ev-1", "time": "2026-11-22T10:00:00Z",
                    "data": {"title": hostile, "severity": "critical", "tenant_name": "Acme",
                             "finding": {"cvss": 9.8, "cwe": [89]}}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body["accepted"][0],
        json!({"id": "ev-1", "deliveries": 1, "duplicate": false})
    );

    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let r = &got[0];
    assert_eq!(r.method, "PUT");
    assert_eq!(r.path, "/hook");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-tenant"), Some("Acme"));
    assert_eq!(r.header("x-static"), Some("fixed"));
    let v = r.json();
    assert_eq!(
        v["text"],
        format!("New finding_added: {hostile} (critical)")
    );
    assert_eq!(v["title"], hostile);
    assert_eq!(
        v["cvss"],
        json!(9.8),
        "a lone placeholder keeps the number type"
    );
    assert_eq!(v["finding"], json!({"cvss": 9.8, "cwe": [89]}));
    assert_eq!(v["missing"], "");
    assert_eq!(v["static"], json!([1, true]));

    let history = relay
        .wait_history("templated", Duration::from_secs(5), |h| !h.is_empty())
        .await;
    assert_eq!(history[0]["status"], "succeeded");
    assert_eq!(
        history[0]["warnings"],
        json!(["unknown template variable {{nope}} rendered empty"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_template_the_event_itself_is_sent_and_get_sends_no_body() {
    let rx = Receiver::start().await;
    let extra = format!(
        "webhooks:\n{}{}",
        webhook_yaml("Plain", &rx.url("/plain"), ""),
        webhook_yaml("Getter", &rx.url("/get?x=1"), "    method: GET\n")
    );
    let relay = Relay::start(&extra).await;
    let event = json!({"type": "scan.completed", "id": "e-plain", "time": "2026-11-22T10:00:00Z", "data": {"n": 1}});
    let (status, _) = relay.post("/api/v1/events", Some(INGEST), &event).await;
    assert_eq!(status, 202);
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    let plain = got
        .iter()
        .find(|r| r.path == "/plain")
        .expect("POST arrived");
    assert_eq!(plain.method, "POST");
    assert_eq!(plain.json(), event);
    let get = got
        .iter()
        .find(|r| r.path == "/get?x=1")
        .expect("GET arrived");
    assert_eq!(get.method, "GET");
    assert!(get.body.is_empty());
    assert_eq!(get.header("content-type"), None);
}

on_both_stores! {
async fn the_same_id_posted_twice_is_delivered_once(backend) {
    let rx = Receiver::start().await;
    let relay = backend.start(&format!(
        "webhooks:\n{}",
        webhook_yaml("Once", &rx.url("/"), "")
    ))
    .await;
    let event = json!({"type": "x", "id": "dup-1", "data": {}});
    let (s1, b1) = relay.post("/api/v1/events", Some(INGEST), &event).await;
    let (s2, b2) = relay.post("/api/v1/events", Some(INGEST), &event).await;
    // And once more inside a batch together with a new event.
    let (s3, b3) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!([event, {"type": "x", "id": "dup-2"}]),
        )
        .await;
    assert_eq!((s1, s2, s3), (202, 202, 202));
    assert_eq!(b1["accepted"][0]["duplicate"], false);
    assert_eq!(
        b2["accepted"][0],
        json!({"id": "dup-1", "deliveries": 1, "duplicate": true})
    );
    assert_eq!(b3["accepted"][0]["duplicate"], true);
    assert_eq!(b3["accepted"][1]["duplicate"], false);
    rx.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids: Vec<String> = rx
        .received()
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.iter().filter(|i| *i == "dup-1").count(), 1, "{ids:?}");
    assert_eq!(ids.len(), 2, "{ids:?}");
}
}

on_both_stores! {
async fn kill_9_right_after_the_202_loses_nothing(backend) {
    let rx = Receiver::start().await;
    // A slow receiver keeps most deliveries pending when the relay dies.
    for _ in 0..50 {
        rx.push(Reply {
            delay: Duration::from_millis(100),
            ..Reply::status(200)
        });
    }
    let mut relay = backend.start(&format!(
        "webhooks:\n{}",
        webhook_yaml("Durable", &rx.url("/"), "")
    ))
    .await;
    let batch: Vec<Value> = (0..300)
        .map(|i| json!({"type": "x", "id": format!("k-{i}")}))
        .collect();
    let (status, _) = relay
        .post("/api/v1/events", Some(INGEST), &Value::Array(batch))
        .await;
    assert_eq!(status, 202);
    relay.kill9();
    let before = rx.received().len();
    relay.spawn().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ids: HashSet<String> = rx
            .received()
            .iter()
            .map(|r| r.json()["id"].as_str().unwrap().to_owned())
            .collect();
        if ids.len() == 300 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of 300 events arrived",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        before < 300,
        "the kill came too late to prove anything ({before} delivered before it)"
    );
}
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_the_documented_status_and_a_message_naming_the_problem() {
    let rx = Receiver::start().await;
    let extra = format!(
        "event_types:\n  finding_added: A new finding\nwebhooks:\n{}",
        webhook_yaml("Sink", &rx.url("/"), "")
    );
    let relay = Relay::start(&extra).await;
    let ev = "/api/v1/events";
    // (what, status, error code, text the message must contain, body, token)
    type Case<'a> = (&'a str, u16, &'a str, &'a str, Bytes, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "malformed json",
            400,
            "malformed_json",
            "not valid JSON",
            Bytes::from("{\"type\": "),
            Some(INGEST),
        ),
        (
            "unknown type",
            400,
            "unknown_type",
            "\"nope\"",
            Bytes::from(r#"{"type":"nope"}"#),
            Some(INGEST),
        ),
        (
            "missing type",
            400,
            "missing_type",
            "type",
            Bytes::from(r#"{"data":{}}"#),
            Some(INGEST),
        ),
        (
            "bad event in a batch",
            400,
            "missing_type",
            "events[1]",
            Bytes::from(r#"[{"type":"finding_added"},{"data":{}}]"#),
            Some(INGEST),
        ),
        (
            "2 MiB body",
            413,
            "payload_too_large",
            "1048576",
            Bytes::from(vec![b' '; 2 * 1024 * 1024]),
            Some(INGEST),
        ),
        (
            "no token",
            401,
            "unauthorized",
            "bearer",
            Bytes::from(r#"{"type":"finding_added"}"#),
            None,
        ),
        (
            "wrong token",
            401,
            "unauthorized",
            "bearer",
            Bytes::from(r#"{"type":"finding_added"}"#),
            Some("nope"),
        ),
        (
            "viewer posting",
            403,
            "forbidden",
            "ingest",
            Bytes::from(r#"{"type":"finding_added"}"#),
            Some(VIEWER),
        ),
    ];
    for (what, status, code, needle, body, token) in cases {
        let (s, b) = relay.post_raw(ev, token, body).await;
        assert_eq!(s, status, "{what}: {b}");
        assert_eq!(b["error"]["code"], code, "{what}: {b}");
        let msg = b["error"]["message"].as_str().unwrap_or("");
        assert!(
            msg.contains(needle),
            "{what}: message {msg:?} should mention {needle:?}"
        );
    }
    // The ingest token may not read admin routes.
    let (s, b) = relay.get("/api/v1/webhooks", Some(INGEST)).await.unwrap();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{b}"
    );
    // Nothing bad was stored or sent, and the relay still serves.
    let (s, _) = relay
        .post(
            ev,
            Some(INGEST),
            &json!({"type": "finding_added", "id": "ok"}),
        )
        .await;
    assert_eq!(s, 202);
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rx.received().len(),
        1,
        "only the good event is delivered: {got:?}"
    );
}

#[test]
fn a_bad_relay_yaml_is_refused_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.yaml");
    std::fs::write(&path, "listen: 127.0.0.1:0\nwebhooks:\n  - name: a\n    url: https://x.example\n    retry_count: 99\n").unwrap();
    for cmd in ["check", "serve"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
            .args([cmd, "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        let expected = format!("{}:5:", path.display());
        assert!(err.contains(&expected), "{cmd}: {err}");
        assert!(
            err.contains("retry_count: 99 is out of range"),
            "{cmd}: {err}"
        );
    }
    // A missing environment variable is named.
    std::fs::write(
        &path,
        "auth:\n  tokens:\n    - {name: a, token: \"${RELAY_TEST_UNSET_VAR}\", role: admin}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("RELAY_TEST_UNSET_VAR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RELAY_TEST_UNSET_VAR is not set") && err.contains(":3:"),
        "{err}"
    );
}

on_both_stores! {
async fn history_records_a_2xx_a_500_and_a_refused_connection(backend) {
    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.push(Reply {
        body: "boom: database down".into(),
        ..Reply::status(500)
    });
    let closed_port = free_port();
    let extra = format!(
        "webhooks:\n{}{}{}",
        webhook_yaml("Good", &ok.url("/"), "    retry_count: 0\n"),
        webhook_yaml("Bad", &failing.url("/"), "    retry_count: 0\n"),
        webhook_yaml(
            "Down",
            &format!("http://127.0.0.1:{closed_port}/"),
            "    retry_count: 0\n"
        ),
    );
    let relay = backend.start(&extra).await;
    let (s, b) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "x", "id": "h-1"}),
        )
        .await;
    assert_eq!((s, b["accepted"][0]["deliveries"].as_u64()), (202, Some(3)));

    let good = relay
        .wait_history("good", Duration::from_secs(10), |h| !h.is_empty())
        .await;
    let g = &good[0];
    assert_eq!(
        (
            g["status"].as_str(),
            g["status_code"].as_u64(),
            g["success"].as_bool()
        ),
        (Some("succeeded"), Some(200), Some(true))
    );
    assert_eq!(g["error"], Value::Null);
    assert_eq!(
        (
            g["attempt"].as_u64(),
            g["event_id"].as_str(),
            g["event_type"].as_str()
        ),
        (Some(1), Some("h-1"), Some("x"))
    );
    for key in [
        "id",
        "delivery_id",
        "webhook_id",
        "duration_ms",
        "created_at",
        "warnings",
        "response_body",
    ] {
        assert!(g.get(key).is_some(), "attempt lacks {key}: {g}");
    }

    let bad = relay
        .wait_history("bad", Duration::from_secs(10), |h| !h.is_empty())
        .await;
    let b = &bad[0];
    assert_eq!(
        (
            b["status"].as_str(),
            b["status_code"].as_u64(),
            b["success"].as_bool()
        ),
        (Some("failed"), Some(500), Some(false))
    );
    assert_eq!(b["error"]["kind"], "http_status");
    assert_eq!(b["response_body"], "boom: database down");

    let down = relay
        .wait_history("down", Duration::from_secs(10), |h| !h.is_empty())
        .await;
    let d = &down[0];
    assert_eq!(
        (
            d["status"].as_str(),
            d["status_code"].clone(),
            d["success"].as_bool()
        ),
        (Some("failed"), Value::Null, Some(false))
    );
    assert_eq!(d["error"]["kind"], "network");
    assert_eq!(d["error"]["origin"], "upstream");
    let msg = d["error"]["message"].as_str().unwrap();
    assert!(msg.to_lowercase().contains("refused"), "{msg}");

    // GET /api/v1/webhooks lists the three from relay.yaml.
    let (s, list) = relay.get("/api/v1/webhooks", Some(VIEWER)).await.unwrap();
    assert_eq!(s, 200);
    let names: HashSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, HashSet::from(["Good", "Bad", "Down"]));
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|w| w["source"] == "config")
    );
}
}
