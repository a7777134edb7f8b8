//! OAuth2 client credentials for any webhook (DESIGN §18), end to end: the
//! real relay, a loopback token endpoint that counts token requests, and a
//! loopback receiver that checks the bearer token.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const CLIENT_SECRET: &str = "cs-7f1e0c9a-very-secret";

fn token(value: &str, expires_in: u64) -> Reply {
    Reply {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: json!({"access_token": value, "token_type": "Bearer", "expires_in": expires_in})
            .to_string(),
        delay: Duration::ZERO,
    }
}

fn config(rx: &Receiver, idp: &Receiver, extra: &str) -> String {
    format!(
        r#"webhooks:
  - name: Graph
    url: {u}
    retry_count: 0
    auth:
      oauth2:
        token_url: {t}
        client_id: relay-client
        client_secret: "{CLIENT_SECRET}"
        scope: "tickets.write api.read"
{extra}"#,
        u = rx.url("/hook"),
        t = idp.url("/tenant-42/oauth2/token"),
    )
}

fn bearers(got: &[Received]) -> Vec<String> {
    got.iter()
        .map(|r| r.header("authorization").unwrap_or("").to_owned())
        .collect()
}

async fn post_events(relay: &Relay, n: usize) {
    for i in 0..n {
        let (s, body) = relay
            .post(
                "/api/v1/events",
                Some(INGEST),
                &json!({"type": "finding", "data": {"title": format!("event {i}")}}),
            )
            .await;
        assert_eq!(s, 202, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_a_hundred_deliveries_share_one_token_request() {
    let rx = Receiver::start().await;
    let idp = Receiver::start().await;
    idp.push(token("tok-1", 3600));
    idp.push(token("tok-unexpected", 3600));
    let relay = Relay::start(&config(&rx, &idp, "")).await;
    post_events(&relay, 100).await;
    let got = rx.wait_for(100, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 100);
    assert!(
        bearers(&got).iter().all(|b| b == "Bearer tok-1"),
        "{:?}",
        bearers(&got)
    );
    // Nothing more arrives later, and exactly one token request was made.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tokens = idp.received();
    assert_eq!(tokens.len(), 1, "{tokens:#?}");
    let t = &tokens[0];
    assert_eq!(
        (t.method.as_str(), t.path.as_str()),
        ("POST", "/tenant-42/oauth2/token")
    );
    assert_eq!(
        t.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form: Vec<(String, String)> = String::from_utf8(t.body.to_vec())
        .unwrap()
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.replace('+', " "))
        })
        .collect();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(field("grant_type"), Some("client_credentials"));
    assert_eq!(field("client_id"), Some("relay-client"));
    assert_eq!(field("client_secret"), Some(CLIENT_SECRET));
    assert_eq!(field("scope"), Some("tickets.write api.read"));

    // Redacted for viewers and admins alike; never in the logs.
    for token in [VIEWER, ADMIN] {
        let (s, w) = relay
            .get("/api/v1/webhooks/graph", Some(token))
            .await
            .unwrap();
        assert_eq!(s, 200, "{w}");
        assert_eq!(w["auth"]["oauth2"]["client_secret"], "[redacted]", "{w}");
        assert_eq!(w["auth"]["oauth2"]["client_id"], "relay-client", "{w}");
        assert!(!w.to_string().contains(CLIENT_SECRET), "{w}");
        assert!(!w.to_string().contains("tok-1"), "{w}");
    }
    let (_, w) = relay
        .get("/api/v1/webhooks/graph", Some(VIEWER))
        .await
        .unwrap();
    assert!(
        !w["auth"]["oauth2"]["token_url"]
            .as_str()
            .unwrap()
            .contains("tenant-42"),
        "{w}"
    );
    let logs = relay.logs();
    assert!(
        !logs.contains(CLIENT_SECRET) && !logs.contains("tok-1"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_an_expired_token_costs_exactly_one_more_token_request() {
    let rx = Receiver::start().await;
    let idp = Receiver::start().await;
    idp.push(token("tok-1", 1));
    idp.push(token("tok-2", 1));
    idp.push(token("tok-unexpected", 1));
    let relay = Relay::start(&config(&rx, &idp, "")).await;
    post_events(&relay, 3).await;
    rx.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(idp.received().len(), 1);
    // Past expires_in (1 s): the next deliveries share one new token.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    post_events(&relay, 3).await;
    let got = rx.wait_for(6, Duration::from_secs(10)).await;
    assert_eq!(
        bearers(&got),
        [
            "Bearer tok-1",
            "Bearer tok-1",
            "Bearer tok-1",
            "Bearer tok-2",
            "Bearer tok-2",
            "Bearer tok-2"
        ]
    );
    assert_eq!(idp.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_a_401_refreshes_the_token_once_and_the_retry_carries_the_new_one() {
    let rx = Receiver::start().await;
    let idp = Receiver::start().await;
    idp.push(token("tok-old", 3600));
    idp.push(token("tok-new", 3600));
    idp.push(token("tok-newer", 3600));
    rx.push(Reply::status(401));
    let relay = Relay::start(&config(&rx, &idp, "")).await;
    post_events(&relay, 1).await;
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(bearers(&got), ["Bearer tok-old", "Bearer tok-new"]);
    let history = relay
        .wait_history("graph", Duration::from_secs(10), |h| h.len() == 1)
        .await;
    assert_eq!(history[0]["status"], "succeeded", "{history:#?}");
    assert_eq!(history[0]["attempt"], 1);
    assert_eq!(idp.received().len(), 2);

    // A receiver that refuses the new token too: the delivery fails with its
    // 401 after exactly one refresh (no loop of token requests).
    rx.push(Reply::status(401));
    rx.push(Reply::status(401));
    post_events(&relay, 1).await;
    let got = rx.wait_for(4, Duration::from_secs(10)).await;
    assert_eq!(bearers(&got[2..]), ["Bearer tok-new", "Bearer tok-newer"]);
    let history = relay
        .wait_history("graph", Duration::from_secs(10), |h| h.len() == 2)
        .await;
    let failed: Vec<&Value> = history.iter().filter(|a| a["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{history:#?}");
    assert_eq!(failed[0]["status_code"], 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(idp.received().len(), 3);
    assert_eq!(rx.received().len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_a_refused_client_fails_the_delivery_naming_the_error_code_not_the_secret() {
    let rx = Receiver::start().await;
    let idp = Receiver::start().await;
    idp.push(Reply {
        status: 401,
        headers: vec![("content-type".into(), "application/json".into())],
        body: json!({"error": "invalid_client", "error_description": format!("bad secret {CLIENT_SECRET}")})
            .to_string(),
        delay: Duration::ZERO,
    });
    let relay = Relay::start(&config(&rx, &idp, "")).await;
    post_events(&relay, 1).await;
    let history = relay
        .wait_history("graph", Duration::from_secs(10), |h| h.len() == 1)
        .await;
    let a = &history[0];
    assert_eq!(a["status"], "failed", "{a}");
    let message = a["error"]["message"].as_str().unwrap();
    assert!(message.contains("invalid_client"), "{message}");
    assert!(!a.to_string().contains(CLIENT_SECRET), "{a}");
    assert!(!a.to_string().contains("tenant-42"), "{a}");
    assert!(rx.received().is_empty(), "nothing is sent without a token");
    assert!(!relay.logs().contains(CLIENT_SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_the_token_endpoint_goes_through_the_ssrf_guard() {
    // The token endpoint is on loopback, which this relay does not allow.
    let rx = Receiver::start().await;
    let idp = Receiver::start().await;
    idp.push(token("tok-1", 3600));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = format!(
        r#"listen: 127.0.0.1:{port}
storage: {{ sqlite: {db} }}
network: {{ allow_http: true }}
webhooks:
  - name: Graph
    url: {u}
    auth: {{ oauth2: {{ token_url: "{t}", client_id: c, client_secret: s }} }}
"#,
        db = dir.path().join("r.db").display(),
        u = "http://hooks.example.invalid/x",
        t = idp.url("/token"),
    );
    let path = dir.path().join("relay.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("webhooks[0].auth.oauth2.token_url") && err.contains("allow_private"),
        "{err}"
    );
    assert!(idp.received().is_empty() && rx.received().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_an_api_webhook_keeps_its_client_secret_across_a_restart_and_never_shows_it() {
    let rx = Receiver::start().await;
    let idp = Receiver::start().await;
    idp.push(token("tok-1", 3600));
    idp.push(token("tok-2", 3600));
    let mut relay = Relay::start("").await;
    let oauth2 = json!({
        "token_url": idp.url("/token"),
        "client_id": "api-client",
        "client_secret": CLIENT_SECRET,
    });
    let refused = json!({"name": "Env", "url": rx.url("/hook"),
        "auth": {"oauth2": {"token_url": idp.url("/token"), "client_id": "c", "client_secret": "${HOME}"}}});
    let (s, e) = relay.post("/api/v1/webhooks", Some(ADMIN), &refused).await;
    assert_eq!(s, 422, "{e}");
    assert!(e.to_string().contains("auth.oauth2.client_secret"), "{e}");
    let create = json!({"name": "Api Graph", "url": rx.url("/hook"), "auth": {"oauth2": oauth2}});
    let (s, created) = relay.post("/api/v1/webhooks", Some(ADMIN), &create).await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["auth"]["oauth2"]["client_secret"], "[redacted]");
    assert!(!created.to_string().contains(CLIENT_SECRET));
    let id = created["id"].as_str().unwrap().to_owned();
    post_events(&relay, 1).await;
    rx.wait_for(1, Duration::from_secs(10)).await;

    relay.restart().await;
    post_events(&relay, 1).await;
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(bearers(&got), ["Bearer tok-1", "Bearer tok-2"]);
    let tokens = idp.received();
    assert_eq!(tokens.len(), 2);
    let form = String::from_utf8(tokens[1].body.to_vec()).unwrap();
    assert!(
        form.contains(&format!("client_secret={CLIENT_SECRET}")),
        "the restarted relay sent {form}"
    );
    let (_, w) = relay
        .get(&format!("/api/v1/webhooks/{id}"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(w["auth"]["oauth2"]["client_secret"], "[redacted]", "{w}");
}
