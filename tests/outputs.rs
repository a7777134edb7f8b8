//! Built-in outputs through the real relay: Splunk HEC and Slack request
//! shapes and response handling, checked by a loopback receiver.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn splunk_hec_requests_have_the_hec_shape_and_hec_codes_are_classified() {
    let hec = Receiver::start().await;
    hec.push(Reply {
        body: r#"{"text":"Success","code":0}"#.into(),
        ..Reply::status(200)
    });
    hec.push(Reply {
        body: r#"{"text":"Server is busy","code":9}"#.into(),
        ..Reply::status(503)
    });
    hec.push(Reply {
        body: r#"{"text":"Success","code":0}"#.into(),
        ..Reply::status(200)
    });
    hec.push(Reply {
        body: r#"{"text":"Invalid token","code":4}"#.into(),
        ..Reply::status(403)
    });
    let extra = format!(
        r#"delivery: {{ retry_base_ms: 100 }}
webhooks:
  - name: Splunk
    url: {}
    destination: splunk_hec
    destination_options: {{ token: "hec-t0ken-123", index: security, source: relay, sourcetype: "relay:event", host: relay-01 }}
    body: {{ title: "{{{{title}}}}", severity: "{{{{severity}}}}", time: "{{{{time}}}}" }}
"#,
        hec.url("")
    );
    let relay = Relay::start(&extra).await;
    let post = |id: &str| json!({"type": "x", "id": id, "time": "2026-11-22T10:00:00Z", "data": {"title": "T", "severity": "high"}});
    relay
        .post("/api/v1/events", Some(INGEST), &post("s-1"))
        .await;
    let got = hec.wait_for(1, Duration::from_secs(10)).await;
    let r = &got[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/services/collector/event")
    );
    assert_eq!(r.header("authorization"), Some("Splunk hec-t0ken-123"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["index"], "security");
    assert_eq!(body["source"], "relay");
    assert_eq!(body["sourcetype"], "relay:event");
    assert_eq!(body["host"], "relay-01");
    assert_eq!(
        body["event"],
        json!({"title": "T", "severity": "high", "time": "2026-11-22T10:00:00Z"})
    );
    assert_eq!(body["time"].as_f64(), Some(1_795_341_600.0));

    // Code 9 (busy) is retried; code 4 (invalid token) fails for good.
    relay
        .post("/api/v1/events", Some(INGEST), &post("s-2"))
        .await;
    hec.wait_for(3, Duration::from_secs(10)).await;
    relay
        .post("/api/v1/events", Some(INGEST), &post("s-3"))
        .await;
    let h = relay
        .wait_history("splunk", Duration::from_secs(10), |h| {
            h.iter().any(|a| a["event_id"] == "s-3")
        })
        .await;
    let for_event = |id: &str| -> Vec<(String, Option<u64>)> {
        let mut v: Vec<(String, Option<u64>)> = h
            .iter()
            .filter(|a| a["event_id"] == id)
            .map(|a| {
                (
                    a["status"].as_str().unwrap().to_owned(),
                    a["status_code"].as_u64(),
                )
            })
            .collect();
        v.reverse();
        v
    };
    assert_eq!(
        for_event("s-2"),
        vec![
            ("retrying".to_owned(), Some(503)),
            ("succeeded".to_owned(), Some(200))
        ]
    );
    assert_eq!(for_event("s-3"), vec![("failed".to_owned(), Some(403))]);
    let failed = h.iter().find(|a| a["event_id"] == "s-3").unwrap();
    assert_eq!(failed["error"]["retryable"], false);
    assert!(
        failed["response_body"]
            .as_str()
            .unwrap()
            .contains("Invalid token")
    );
    // The HEC token is a secret: viewers never see it.
    let (_, w) = relay
        .get("/api/v1/webhooks/splunk", Some(VIEWER))
        .await
        .unwrap();
    assert!(!w.to_string().contains("hec-t0ken-123"), "{w}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_webhooks_send_block_kit_and_follow_slack_responses() {
    let slack = Receiver::start().await;
    slack.push(Reply {
        body: "ok".into(),
        ..Reply::status(200)
    });
    slack.push(Reply {
        headers: vec![("Retry-After".into(), "1".into())],
        body: "rate_limited".into(),
        ..Reply::status(429)
    });
    slack.push(Reply {
        body: "ok".into(),
        ..Reply::status(200)
    });
    slack.push(Reply {
        body: "invalid_blocks".into(),
        ..Reply::status(400)
    });
    let extra = format!(
        "delivery: {{ retry_base_ms: 100 }}\nwebhooks:\n  - name: Slack\n    url: {}\n    format: slack\n",
        slack.url("/services/T0/B0/x")
    );
    let relay = Relay::start(&extra).await;
    let ev = |id: &str| json!({"type": "critical_finding", "id": id, "data": {"title": "SQL *injection* <@U123>", "severity": "critical"}});
    relay.post("/api/v1/events", Some(INGEST), &ev("k-1")).await;
    let got = slack.wait_for(1, Duration::from_secs(10)).await;
    let body: Value = got[0].json();
    assert_eq!(body["blocks"][0]["type"], "header");
    assert!(
        body["text"].as_str().unwrap().contains("&lt;@U123&gt;"),
        "mentions are escaped: {body}"
    );
    relay.post("/api/v1/events", Some(INGEST), &ev("k-2")).await;
    let got = slack.wait_for(3, Duration::from_secs(10)).await;
    let gap = got[2].at - got[1].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 honoured, gap {gap:?}"
    );
    relay.post("/api/v1/events", Some(INGEST), &ev("k-3")).await;
    let h = relay
        .wait_history("slack", Duration::from_secs(10), |h| {
            h.iter().any(|a| a["event_id"] == "k-3")
        })
        .await;
    let a = h.iter().find(|a| a["event_id"] == "k-3").unwrap();
    assert_eq!(
        (a["status"].as_str(), a["status_code"].as_u64()),
        (Some("failed"), Some(400))
    );
    assert_eq!(a["response_body"], "invalid_blocks");
    assert_eq!(a["error"]["retryable"], false);
    assert_eq!(h.iter().filter(|a| a["event_id"] == "k-2").count(), 2);
}
