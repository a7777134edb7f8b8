//! The web console (`/ui/`, DESIGN.md §21) through the real binary: in
//! headless Chromium over the DevTools protocol (sign-in, a failed attempt
//! and its resend, what a viewer sees, event markup staying text), and at
//! the HTTP level (sign-in limit, cookie flags, CSRF, expiry, roles).
//! The browser tests write a screenshot of each page to
//! `target/console-screenshots/`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::browser::{Browser, screenshot_path};
use common::*;
use serde_json::{Value, json};

/// The id of the webhook named `name`.
async fn webhook_id(relay: &Relay, name: &str) -> String {
    let (_, list) = relay.get("/api/v1/webhooks", Some(ADMIN)).await.unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .and_then(|w| w["id"].as_str())
        .unwrap_or_else(|| panic!("no webhook {name}: {list}"))
        .to_owned()
}

/// A relay with one webhook named `name` at `url` (more YAML fields in
/// `fields`, each line indented by four spaces): the relay and the
/// webhook's id.
async fn relay_with(name: &str, url: &str, fields: &str) -> (Relay, String) {
    let relay = Relay::start(&format!(
        "webhooks:\n  - name: {name}\n    url: {url}\n{fields}"
    ))
    .await;
    let id = webhook_id(&relay, name).await;
    (relay, id)
}

/// Posts `event` and waits for the first attempt at webhook `id`: its
/// delivery id.
async fn deliver(relay: &Relay, id: &str, event: Value) -> String {
    let (s, body) = relay.post("/api/v1/events", Some(INGEST), &event).await;
    assert_eq!(s, 202, "{body}");
    let history = relay
        .wait_history(id, Duration::from_secs(20), |d| !d.is_empty())
        .await;
    history[0]["delivery_id"].as_str().unwrap().to_owned()
}

/// Signs in in the browser with `token`; lands on the webhooks page.
async fn sign_in(b: &Browser, relay: &Relay, token: &str) {
    b.goto(&relay.url("/ui/")).await;
    b.wait_for("document.querySelector('#token')", Duration::from_secs(10))
        .await;
    b.fill("#token", token).await;
    b.click_and_wait("#sign-in").await;
    b.wait_for(
        "document.querySelector('#webhooks, main h1')",
        Duration::from_secs(10),
    )
    .await;
    assert!(b.eval("location.pathname").await == json!("/ui/webhooks"));
}

/// Signs in over HTTP: the `Cookie` header value of the new session.
async fn session(relay: &Relay, token: &str) -> String {
    let (status, headers, body) = raw_request(
        "POST",
        &relay.url("/ui/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(Bytes::from(format!("token={token}"))),
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let cookie = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie");
    cookie.split(';').next().unwrap().to_owned()
}

/// The CSRF token the session's forms carry.
async fn csrf(relay: &Relay, cookie: &str) -> String {
    let (status, _, body) = raw_request(
        "GET",
        &relay.url("/ui/webhooks"),
        &[("cookie", cookie)],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let at = body
        .find("name=\"csrf\" value=\"")
        .expect("a form with csrf")
        + 19;
    body[at..].split('"').next().unwrap().to_owned()
}

/// POSTs a console form.
async fn post_form(relay: &Relay, path: &str, cookie: &str, form: &str) -> (u16, String) {
    let (status, headers, body) = raw_request(
        "POST",
        &relay.url(path),
        &[
            ("cookie", cookie),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some(Bytes::from(form.to_owned())),
    )
    .await;
    let location = headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    (status, format!("{location}{body}"))
}

// ---------------------------------------------------------------------------
// In the browser

#[tokio::test(flavor = "multi_thread")]
async fn admin_sees_the_failed_attempt_with_its_body_resends_it_once_the_receiver_recovered_and_sees_the_success()
 {
    let rx = Receiver::start().await;
    rx.push(Reply {
        body: "receiver says: disk full on node-7".into(),
        ..Reply::status(500)
    });
    let (relay, id) = relay_with("Ops hook", &rx.url("/hook"), "    retry_count: 0\n").await;
    deliver(
        &relay,
        &id,
        json!({"type": "finding", "id": "ev-fail-1", "data": {"title": "Open S3 bucket", "severity": "high"}}),
    )
    .await;

    let b = Browser::start().await;
    sign_in(&b, &relay, ADMIN).await;
    assert_eq!(
        b.eval("document.querySelector('#role').textContent").await,
        json!("admin")
    );
    assert_eq!(
        b.eval("document.cookie").await,
        json!(""),
        "the session cookie is HttpOnly: no script reads it"
    );
    let text = b.text().await;
    assert!(
        text.contains("Ops hook") && text.contains("failed"),
        "{text}"
    );
    b.screenshot(&screenshot_path("webhooks")).await;

    b.click_and_wait(&format!("a[href='/ui/webhooks/{id}']"))
        .await;
    assert_eq!(b.count("#rows tr[data-status='failed']").await, 1);
    assert_eq!(b.count("#rows tr[data-status='succeeded']").await, 0);
    b.screenshot(&screenshot_path("deliveries")).await;

    b.click_and_wait("#rows tr[data-status='failed'] a").await;
    let body = b
        .eval("document.querySelector('#attempt-1 .response-body').textContent")
        .await;
    assert_eq!(body, json!("receiver says: disk full on node-7"));
    assert_eq!(
        b.eval("document.querySelector('#attempt-1 .status-code').textContent")
            .await,
        json!("500")
    );
    assert_eq!(
        b.eval("document.querySelector('#event-title').textContent")
            .await,
        json!("Open S3 bucket")
    );
    b.screenshot(&screenshot_path("attempt")).await;

    // The receiver has recovered (its script is empty: it answers 200).
    b.click_and_wait("button[data-action='resend']").await;
    assert_eq!(
        b.eval("location.pathname").await,
        json!(format!("/ui/webhooks/{id}"))
    );
    assert!(b.text().await.contains("Resent"));
    // The new attempt shows up without a reload (the page polls its rows).
    b.wait_for(
        "document.querySelectorAll(\"#rows tr[data-status='succeeded']\").length === 1",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(b.count("#rows tr[data-status='failed']").await, 1);
    assert_eq!(rx.received().len(), 2, "one failed send and one resend");

    // Live: a new event's attempt appears while the page stays open.
    b.eval("window.__same_page = 1").await;
    relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "finding", "id": "ev-live-2", "data": {"title": "Second"}}),
        )
        .await;
    b.wait_for(
        "document.querySelectorAll('#rows tr').length === 3",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        b.eval("window.__same_page").await,
        json!(1),
        "no reload happened"
    );
    b.screenshot(&screenshot_path("deliveries-after-resend"))
        .await;

    b.goto(&relay.url("/ui/plugins")).await;
    let text = b.text().await;
    assert!(
        text.contains("slack") && text.contains("formatter"),
        "{text}"
    );
    b.screenshot(&screenshot_path("plugins")).await;
    assert!(b.dialogs().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_sees_no_admin_control_and_no_secret_in_any_page_source() {
    let rx = Receiver::start().await;
    rx.push(Reply::status(503));
    let secret = "whsec_c2VjcmV0LWZvci12aWV3ZXItdGVzdHM5OTk=";
    let bearer = "Bearer sk_live_4242viewerHiddenKey0000";
    let (relay, id) = relay_with(
        "Signed hook",
        &rx.url("/path-token-abc123/hook?token=qs-secret-777"),
        &format!("    retry_count: 0\n    secret: \"{secret}\"\n    signature: standard\n    headers:\n      Authorization: \"{bearer}\"\n      X-Source: plain-value\n"),
    )
    .await;
    let delivery = deliver(
        &relay,
        &id,
        json!({"type": "finding", "id": "ev-view-1", "data": {"title": "Seen by a viewer"}}),
    )
    .await;

    let b = Browser::start().await;
    sign_in(&b, &relay, VIEWER).await;
    let pages = [
        "/ui/webhooks".to_owned(),
        format!("/ui/webhooks/{id}"),
        format!("/ui/deliveries/{delivery}"),
        "/ui/plugins".to_owned(),
        "/ui/events".to_owned(),
        "/ui/events/ev-view-1".to_owned(),
    ];
    for (n, page) in pages.iter().enumerate() {
        b.goto(&relay.url(page)).await;
        assert_eq!(b.eval("location.pathname").await, json!(page));
        let html = b.html().await;
        let (_, _, source) = raw_request(
            "GET",
            &relay.url(page),
            &[("cookie", &session(&relay, VIEWER).await)],
            None,
        )
        .await;
        for text in [&html, &source] {
            for hidden in [
                secret,
                "c2VjcmV0LWZvci12aWV3ZXItdGVzdHM5OTk",
                "sk_live_4242viewerHiddenKey0000",
                "path-token-abc123",
                "qs-secret-777",
                VIEWER,
                ADMIN,
            ] {
                assert!(!text.contains(hidden), "{page} shows {hidden:?}");
            }
            assert!(!text.contains("data-action"), "{page} has an admin control");
        }
        assert_eq!(b.count("button.admin").await, 0, "{page}");
        assert_eq!(
            b.count("form[method='post']").await,
            1,
            "{page}: only sign-out"
        );
        if n == 2 {
            // The delivery page shows the headers with the secret redacted.
            let headers = b
                .eval("document.querySelector('#request-headers').innerText")
                .await;
            let headers = headers.as_str().unwrap();
            assert!(
                headers.contains("Authorization") && headers.contains("[redacted]"),
                "{headers}"
            );
            assert!(headers.contains("plain-value"), "{headers}");
        }
        b.screenshot(&screenshot_path(&format!("viewer-{n}"))).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn event_markup_in_a_title_is_shown_as_text_and_runs_nothing() {
    let rx = Receiver::start().await;
    let (relay, id) = relay_with("Markup", &rx.url("/m"), "").await;
    let title = r#"<script>window.__xss=1;alert(1)</script>"><img src=x onerror="window.__xss=2;alert(2)">"#;
    let delivery = deliver(
        &relay,
        &id,
        json!({"type": "finding", "id": "ev-xss-1", "data": {"title": title, "host": "<b>bold</b>"}}),
    )
    .await;

    let b = Browser::start().await;
    sign_in(&b, &relay, ADMIN).await;
    b.goto(&relay.url(&format!("/ui/deliveries/{delivery}")))
        .await;
    assert_eq!(
        b.eval("document.querySelector('#event-title').textContent")
            .await,
        json!(title),
        "the title is shown as it was sent"
    );
    assert!(b.text().await.contains("<b>bold</b>"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.eval("typeof window.__xss").await, json!("undefined"));
    assert_eq!(
        b.count("#event-title *").await,
        0,
        "no element made from the title"
    );
    assert_eq!(b.count("img").await, 0);
    assert_eq!(b.count("#event-data *").await, 0, "the data is text too");
    assert_eq!(b.count("script:not([src])").await, 0, "no inline script");
    assert!(b.dialogs().is_empty(), "a dialog opened: {:?}", b.dialogs());
    b.screenshot(&screenshot_path("markup-as-text")).await;
}

// ---------------------------------------------------------------------------
// Over HTTP

#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_ins_are_limited_per_address_with_a_clear_message() {
    let relay = Relay::start("console:\n  login_max_failures: 3\n  login_window_s: 60\n").await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    for n in 0..3 {
        let (status, _, body) = raw_request(
            "POST",
            &relay.url("/ui/login"),
            &form,
            Some(Bytes::from(format!("token=wrong-{n}"))),
        )
        .await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("That token is not valid."));
    }
    // Even the right token is refused now, with a clear message.
    let (status, headers, body) = raw_request(
        "POST",
        &relay.url("/ui/login"),
        &form,
        Some(Bytes::from(format!("token={ADMIN}"))),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("Too many failed sign-ins from your address"),
        "{body}"
    );
    assert!(headers.get("set-cookie").is_none());
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // JSON sign-in answers the same, as JSON.
    let (status, _, body) = raw_request(
        "POST",
        &relay.url("/ui/login"),
        &[("content-type", "application/json")],
        Some(Bytes::from(json!({"token": ADMIN}).to_string())),
    )
    .await;
    assert_eq!(status, 429);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "login_refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_cookie_is_httponly_samesite_strict_and_secure_behind_https() {
    let relay = Relay::start("console:\n  session_ttl_s: 600\n").await;
    let login = |proto: Option<&'static str>| {
        let relay = &relay;
        async move {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(p) = proto {
                headers.push(("x-forwarded-proto", p));
            }
            let (status, h, body) = raw_request(
                "POST",
                &relay.url("/ui/login"),
                &headers,
                Some(Bytes::from(json!({"token": VIEWER}).to_string())),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(
                serde_json::from_str::<Value>(&body).unwrap(),
                json!({"role": "viewer", "expires_in_s": 600})
            );
            h["set-cookie"].to_str().unwrap().to_owned()
        }
    };
    let plain = login(None).await;
    let attrs: Vec<&str> = plain.split("; ").collect();
    assert!(
        attrs[0].starts_with("relay_session=") && attrs[0].len() > 40,
        "{plain}"
    );
    for a in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=600"] {
        assert!(attrs.contains(&a), "{plain} lacks {a}");
    }
    assert!(!attrs.contains(&"Secure"), "{plain}");
    assert!(!plain.contains(VIEWER), "the token is not in the cookie");
    let https = login(Some("https")).await;
    assert!(https.split("; ").any(|a| a == "Secure"), "{https}");

    // Every console answer carries the CSP without inline script.
    let cookie = plain.split(';').next().unwrap();
    let (status, h, body) = raw_request(
        "GET",
        &relay.url("/ui/webhooks"),
        &[("cookie", cookie)],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(!body.contains("<script>"), "no inline script");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing() {
    let rx = Receiver::start().await;
    let (relay, id) = relay_with("Guarded", &rx.url("/g"), "").await;
    let cookie = session(&relay, ADMIN).await;
    let path = format!("/ui/webhooks/{id}/test");
    for form in ["", "csrf=", "csrf=forged-token", "other=1"] {
        let (status, body) = post_form(&relay, &path, &cookie, form).await;
        assert_eq!(status, 403, "{form:?}: {body}");
        assert!(body.contains("CSRF token"), "{body}");
    }
    // Another session's token is not this session's.
    let other = session(&relay, ADMIN).await;
    let other_csrf = csrf(&relay, &other).await;
    let (status, _) = post_form(&relay, &path, &cookie, &format!("csrf={other_csrf}")).await;
    assert_eq!(status, 403);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 0, "no test was sent");
    let good = csrf(&relay, &cookie).await;
    let (status, location) = post_form(&relay, &path, &cookie, &format!("csrf={good}")).await;
    assert_eq!(status, 303);
    assert_eq!(location, format!("/ui/webhooks/{id}?notice=tested"));
    assert_eq!(rx.wait_for(1, Duration::from_secs(10)).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_expires_after_session_ttl_s_and_sign_out_ends_it_at_once() {
    let relay = Relay::start("console:\n  session_ttl_s: 2\n").await;
    let cookie = session(&relay, VIEWER).await;
    let get = |path: &'static str, cookie: String| {
        let url = relay.url(path);
        async move { raw_request("GET", &url, &[("cookie", &cookie)], None).await }
    };
    assert_eq!(get("/ui/webhooks", cookie.clone()).await.0, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, headers, _) = get("/ui/webhooks", cookie.clone()).await;
    assert_eq!(status, 303, "an expired session is sent to sign-in");
    assert_eq!(headers["location"], "/ui/login");
    // Sign-out ends a live session before its time.
    let cookie = session(&relay, VIEWER).await;
    let token = csrf(&relay, &cookie).await;
    let (status, location) =
        post_form(&relay, "/ui/logout", &cookie, &format!("csrf={token}")).await;
    assert_eq!((status, location.as_str()), (303, "/ui/login"));
    assert_eq!(get("/ui/webhooks", cookie.clone()).await.0, 303);
    let (status, _, _) = raw_request(
        "GET",
        &relay.url("/ui/webhooks/x/rows"),
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(status, 401, "the live refresh learns it is signed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_session_is_refused_on_every_admin_post_and_tokens_without_a_reading_role_cannot_sign_in()
 {
    let rx = Receiver::start().await;
    rx.push(Reply::status(500));
    let (relay, id) = relay_with("Kept", &rx.url("/k"), "    retry_count: 0\n").await;
    let delivery = deliver(&relay, &id, json!({"type": "t", "id": "ev-role-1"})).await;
    let cookie = session(&relay, VIEWER).await;
    let token = csrf(&relay, &cookie).await;
    let mut admin_routes = 0;
    for r in relay::console::ROUTES {
        if r.access != relay::api::Access::Admin {
            continue;
        }
        admin_routes += 1;
        let path = r
            .path
            .replace("/webhooks/{id}", &format!("/webhooks/{id}"))
            .replace("/deliveries/{id}", &format!("/deliveries/{delivery}"))
            .replace("/events/{id}", "/events/ev-role-1");
        let (status, body) = post_form(&relay, &path, &cookie, &format!("csrf={token}")).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("needs the admin role"), "{body}");
    }
    assert_eq!(admin_routes, 5);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 1, "only the first delivery was sent");
    // An ingest token opens no session.
    let (status, headers, body) = raw_request(
        "POST",
        &relay.url("/ui/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(Bytes::from(format!("token={INGEST}"))),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("needs the viewer or admin role"));
    assert!(headers.get("set-cookie").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn re_enable_sends_what_waited_behind_a_tripped_breaker_and_test_all_reaches_every_active_webhook()
 {
    let rx = Receiver::start().await;
    rx.push(Reply::status(500));
    let other = Receiver::start().await;
    let relay = Relay::start(&format!(
        "delivery:\n  breaker_threshold: 1\nwebhooks:\n  - name: Tripped\n    url: {}\n    retry_count: 0\n    event_types: [first, second]\n  - name: Other\n    url: {}\n    event_types: [never]\n",
        rx.url("/t"),
        other.url("/o")
    ))
    .await;
    let id = webhook_id(&relay, "Tripped").await;
    deliver(&relay, &id, json!({"type": "first", "id": "ev-trip-1"})).await;
    // The breaker tripped: the next event waits.
    relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "second", "id": "ev-trip-2"}),
        )
        .await;
    let (_, w) = relay
        .get(&format!("/api/v1/webhooks/{id}"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(w["state"], "paused", "{w}");
    let cookie = session(&relay, ADMIN).await;
    let (_, _, page) = raw_request(
        "GET",
        &relay.url("/ui/webhooks"),
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(
        page.matches("data-action=\"enable\"").count(),
        1,
        "only the tripped one"
    );
    let token = csrf(&relay, &cookie).await;
    let (status, location) = post_form(
        &relay,
        &format!("/ui/webhooks/{id}/enable"),
        &cookie,
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(
        (status, location),
        (303, format!("/ui/webhooks/{id}?notice=enabled"))
    );
    let got = rx.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2, "the waiting delivery went out once");
    let (_, w) = relay
        .get(&format!("/api/v1/webhooks/{id}"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(w["state"], "active", "{w}");

    let (status, location) = post_form(
        &relay,
        "/ui/webhooks/test-all",
        &cookie,
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/ui/webhooks?notice=tested-all")
    );
    assert_eq!(rx.wait_for(3, Duration::from_secs(10)).await.len(), 3);
    assert_eq!(other.wait_for(1, Duration::from_secs(10)).await.len(), 1);
    let test = other.received()[0].json();
    assert_eq!(test["data"]["test"], true, "{test}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_events_pages_show_each_routing_decision_with_its_rule_and_filter_by_decision() {
    let rx = Receiver::start().await;
    let relay = Relay::start(&format!(
        "routing:\n  suppress:\n    - name: leftover persistence\n      match: {{ category: leftover }}\nwebhooks:\n  - name: SOC\n    url: {}\n    filter: {{ severity: {{ at_least: high }} }}\n",
        rx.url("/soc")
    ))
    .await;
    for (id, data) in [
        (
            "ev-sent",
            json!({"title": "Live <b>attack</b>", "severity": "critical"}),
        ),
        ("ev-low", json!({"title": "Noise", "severity": "low"})),
        (
            "ev-left",
            json!({"title": "Old", "severity": "critical", "category": "leftover"}),
        ),
    ] {
        let (s, body) = relay
            .post(
                "/api/v1/events",
                Some(INGEST),
                &json!({"type": "finding", "id": id, "data": data}),
            )
            .await;
        assert_eq!(s, 202, "{body}");
    }
    assert_eq!(rx.wait_for(1, Duration::from_secs(20)).await.len(), 1);

    let viewer = session(&relay, VIEWER).await;
    let get = |path: String| {
        let relay = &relay;
        let cookie = viewer.clone();
        async move {
            let (status, _, body) =
                raw_request("GET", &relay.url(&path), &[("cookie", &cookie)], None).await;
            (status, body)
        }
    };
    // The listing: one row per decision, newest first.
    let (status, page) = get("/ui/events".into()).await;
    assert_eq!(status, 200, "{page}");
    for (id, decision) in [
        ("ev-sent", "delivered"),
        ("ev-low", "filtered"),
        ("ev-left", "suppressed"),
    ] {
        let row = page
            .split("<tr data-decision=")
            .find(|r| r.contains(&format!(">{id}</a>")))
            .unwrap_or_else(|| panic!("no row of {id}: {page}"));
        assert!(row.starts_with(&format!("\"{decision}\"")), "{id}: {row}");
    }
    assert!(
        page.contains("leftover persistence"),
        "the suppression rule is named"
    );
    // Filtered by decision: only the suppressed event.
    let (status, page) = get("/ui/events?decision=suppressed".into()).await;
    assert_eq!(status, 200);
    assert_eq!(page.matches("<tr data-decision=").count(), 1, "{page}");
    assert!(page.contains(">ev-left</a>") && !page.contains(">ev-sent</a>"));
    // A bad filter is a 400 naming the value, not an empty page.
    let (status, page) = get("/ui/events?decision=lost".into()).await;
    assert_eq!(status, 400);
    assert!(
        page.contains("decision &#34;lost&#34; is not one of"),
        "{page}"
    );
    // One event: each webhook's decision, the rule, the data as text.
    let (status, page) = get("/ui/events/ev-sent".into()).await;
    assert_eq!(status, 200);
    assert!(page.contains("data-decision=\"delivered\""), "{page}");
    assert!(
        page.contains("Live &#60;b&#62;attack&#60;/b&#62;") && !page.contains("<b>attack"),
        "the title is text"
    );
    assert!(
        !page.contains("data-action"),
        "a viewer gets no replay button"
    );
    let (_, page) = get("/ui/events/ev-low".into()).await;
    assert!(
        page.contains("data-decision=\"filtered\"") && page.contains("severity"),
        "{page}"
    );
    let (status, _) = get("/ui/events/no-such-event".into()).await;
    assert_eq!(status, 404);
    // An admin gets the replay button on the event page.
    let admin = session(&relay, ADMIN).await;
    let (_, _, page) = raw_request(
        "GET",
        &relay.url("/ui/events/ev-left"),
        &[("cookie", &admin)],
        None,
    )
    .await;
    assert!(page.contains("data-action=\"replay\""), "{page}");
}
