//! Hardening end to end (issue 14): URL schemes, `/metrics` access and
//! cost, what viewers and error messages may show. The real binary, a real
//! receiver, real SQLite.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    free_port()
}

fn event(id: &str) -> Value {
    json!({"type": "finding_added", "id": id, "data": {"title": "t"}})
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upper_case_http_scheme_is_accepted_and_delivers() {
    let rx = Receiver::start().await;
    let url = format!("HTTP://{}/upper", rx.addr);
    let relay = Relay::start(&format!("webhooks:\n  - name: upper\n    url: {url}\n")).await;
    let (status, body) = relay
        .post("/api/v1/events", Some(INGEST), &event("up-1"))
        .await;
    assert_eq!(status, 202, "{body}");
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/upper");
    let history = relay
        .wait_history("upper", Duration::from_secs(10), |h| !h.is_empty())
        .await;
    assert_eq!(history[0]["status"], "succeeded", "{history:#?}");
}

/// The relay's config with one more token, `role: metrics`.
fn with_metrics_token(relay: &Relay) -> String {
    let yaml = std::fs::read_to_string(&relay.config_path).expect("config");
    yaml.replace(
        "  tokens:\n",
        "  tokens:\n    - { name: prometheus, token: metrics-token-0123456789, role: metrics }\n",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_need_a_token_once_a_metrics_token_is_configured() {
    let mut relay = Relay::start("").await;
    // Without a metrics token, /metrics stays public (existing setups).
    let (status, _) = relay.get("/metrics", None).await.expect("metrics");
    assert_eq!(status, 200);

    std::fs::write(&relay.config_path, with_metrics_token(&relay)).expect("write config");
    relay.restart().await;
    let (status, body) = relay.get("/metrics", None).await.expect("metrics");
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthorized"))
    );
    let (status, _) = relay
        .get("/metrics", Some("not-the-metrics-token-0123"))
        .await
        .expect("metrics");
    assert_eq!(status, 401);
    let (status, body) = relay
        .get("/metrics", Some("metrics-token-0123456789"))
        .await
        .expect("metrics");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.as_str()
            .is_some_and(|t| t.contains("relay_events_accepted_total")),
        "{body}"
    );
    for (token, want) in [(VIEWER, 200), (ADMIN, 200), (INGEST, 403)] {
        let (status, body) = relay.get("/metrics", Some(token)).await.expect("metrics");
        assert_eq!(status, want, "{body}");
    }
    // The metrics token opens nothing else.
    let (status, _) = relay
        .get("/api/v1/webhooks", Some("metrics-token-0123456789"))
        .await
        .expect("webhooks");
    assert_eq!(status, 403);
}

/// `relay_queue_depth_queries_total` from one scrape.
fn depth_queries(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("relay_queue_depth_queries_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no relay_queue_depth_queries_total in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_metrics_scrapes_read_the_queue_depth_at_most_once_a_second() {
    let relay = Relay::start("").await;
    let scrapes = 64;
    let started = Instant::now();
    let tasks: Vec<_> = (0..scrapes)
        .map(|_| {
            let url = relay.url("/metrics");
            tokio::spawn(async move { request("GET", &url, None, None).await })
        })
        .collect();
    let mut texts = Vec::new();
    for t in tasks {
        let (status, body) = t.await.expect("task").expect("scrape");
        assert_eq!(status, 200);
        texts.push(body.as_str().expect("text").to_owned());
    }
    let elapsed = started.elapsed();
    let queries = texts.iter().map(|t| depth_queries(t)).max().unwrap_or(0);
    // One query per started second of the burst at most (the burst takes
    // well under a second here; the bound holds whatever it takes).
    let allowed = elapsed.as_secs() + 1;
    assert!(
        (1..=allowed).contains(&queries),
        "{scrapes} concurrent scrapes in {elapsed:?} made {queries} queue-depth queries (at most {allowed} allowed)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_sees_no_credential_of_a_webhook() {
    let rx = Receiver::start().await;
    let extra = format!(
        r#"webhooks:
  - name: pager
    url: {url}
    headers:
      X-Honeycomb-Team: hc-team-value-aaaaaaaaaaaa
      X-Relay-Tenant: "tenant-${{T_INGEST}}"
      X-Plain: visible-value
    body:
      routing_key: "R0UT1NGKEYVALUE"
      payload:
        summary: "{{{{title}}}}"
        integration_key: "deep-secret-value"
        note: "sk_live_abcdefghij"
"#,
        url = rx.url("/enqueue?token=query-secret-value")
    );
    let relay = Relay::start(&extra).await;
    let secrets = [
        "hc-team-value-aaaaaaaaaaaa",
        INGEST,
        "R0UT1NGKEYVALUE",
        "deep-secret-value",
        "sk_live_abcdefghij",
        "query-secret-value",
        "enqueue",
    ];
    // The admin sees them all: the check below is not vacuous.
    let (status, admin) = relay
        .get("/api/v1/webhooks/pager", Some(ADMIN))
        .await
        .expect("get");
    assert_eq!(status, 200, "{admin}");
    let admin = admin.to_string();
    for s in secrets {
        assert!(admin.contains(s), "the admin view lacks {s:?}: {admin}");
    }
    for path in ["/api/v1/webhooks", "/api/v1/webhooks/pager"] {
        let (status, view) = relay.get(path, Some(VIEWER)).await.expect("get");
        assert_eq!(status, 200, "{view}");
        let text = view.to_string();
        for s in secrets {
            assert!(!text.contains(s), "{path}: a viewer sees {s:?}: {text}");
        }
        let one = if view.is_array() { &view[0] } else { &view };
        assert_eq!(one["headers"]["X-Plain"], "visible-value", "{text}");
        assert_eq!(one["body"]["payload"]["summary"], "{{title}}", "{text}");
        assert_eq!(one["headers"]["X-Relay-Tenant"], "[redacted]", "{text}");
    }
}

/// Polls `/metrics` until `line` is in it (≤ 10 s).
async fn wait_metric(relay: &Relay, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = relay.get("/metrics", None).await.expect("metrics");
        if body.as_str().is_some_and(|t| t.lines().any(|l| l == line)) {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {line:?}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_deliveries_record_no_url_path_or_query() {
    let port = closed_port();
    let secret_url = format!("http://127.0.0.1:{port}/secret-path?token=abc");
    let relay = Relay::start(&format!(
        "webhooks:\n  - name: closed\n    url: \"{secret_url}\"\n    retry_count: 0\n"
    ))
    .await;
    // An API webhook whose http:// URL is refused at send time once
    // network.allow_http is switched off (API webhooks are not re-checked
    // on a reload).
    let (status, created) = relay
        .request_json(
            "POST",
            "/api/v1/webhooks",
            ADMIN,
            &json!({"name": "later-refused", "url": secret_url, "retry_count": 0}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let api_id = created["id"].as_str().expect("id").to_owned();

    let (status, _) = relay
        .post("/api/v1/events", Some(INGEST), &event("closed-1"))
        .await;
    assert_eq!(status, 202);
    let history = relay
        .wait_history("closed", Duration::from_secs(15), |h| {
            h.iter().any(|a| a["status"] == "failed")
        })
        .await;
    assert_eq!(history[0]["error"]["kind"], "network", "{history:#?}");
    let refused = relay
        .wait_history(&api_id, Duration::from_secs(15), |h| {
            h.iter().any(|a| a["status"] == "failed")
        })
        .await;
    assert_eq!(refused[0]["error"]["kind"], "network", "{refused:#?}");

    let yaml = std::fs::read_to_string(&relay.config_path).expect("config");
    let (head, _) = yaml.split_once("webhooks:").expect("webhooks");
    std::fs::write(
        &relay.config_path,
        head.replace("allow_http: true", "allow_http: false"),
    )
    .expect("write config");
    relay.signal("HUP");
    wait_metric(&relay, "relay_config_reloads_total{result=\"ok\"} 1").await;
    let (status, _) = relay
        .post("/api/v1/events", Some(INGEST), &event("refused-1"))
        .await;
    assert_eq!(status, 202);
    let refused = relay
        .wait_history(&api_id, Duration::from_secs(15), |h| {
            h.iter().any(|a| a["error"]["kind"] == "config")
        })
        .await;

    let errors: Vec<String> = history
        .iter()
        .chain(&refused)
        .map(|a| a["error"].to_string())
        .collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    for error in &errors {
        assert!(error.contains("127.0.0.1"), "{error}");
        for s in ["secret-path", "token=abc"] {
            assert!(!error.contains(s), "a recorded error shows {s:?}: {error}");
        }
    }
    assert!(!relay.logs().contains("secret-path"), "{}", relay.logs());
}

/// `relay check` on `yaml` with `SEC_HOOK_PATH` set: (success, stdout+stderr).
fn check(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("relay.yaml");
    std::fs::write(&path, yaml).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["check", "--config"])
        .arg(&path)
        .env("SEC_HOOK_PATH", "T000/B000/env-secret-path")
        .env("SEC_HOOK_URL", "http://hooks.example/env-secret-url?k=v")
        .output()
        .expect("run relay check");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn relay_check_never_prints_the_path_or_query_of_a_bad_url() {
    let cases = [
        // Loopback, not in allow_private.
        "webhooks:\n  - name: a\n    url: \"https://127.0.0.1/${SEC_HOOK_PATH}?token=query-secret\"\n",
        // http:// without allow_http.
        "webhooks:\n  - name: a\n    url: \"http://hooks.example/${SEC_HOOK_PATH}?token=query-secret\"\n",
        // A scheme that is not allowed.
        "webhooks:\n  - name: a\n    url: \"ftp://hooks.example/${SEC_HOOK_PATH}?token=query-secret\"\n",
        // A syslog URL without its port.
        "webhooks:\n  - name: a\n    url: \"tcp://siem.example/${SEC_HOOK_PATH}?token=query-secret\"\n    format: syslog\n",
        // The whole URL from the environment, then refused (http).
        "webhooks:\n  - name: a\n    url: \"${SEC_HOOK_URL}\"\n",
    ];
    for yaml in cases {
        let (ok, text) = check(yaml);
        assert!(!ok, "accepted: {yaml}\n{text}");
        assert!(text.contains("url"), "{text}");
        for s in ["env-secret", "query-secret", "k=v"] {
            assert!(!text.contains(s), "relay check printed {s:?}:\n{text}");
        }
    }
}
