//! The admin API and access control end to end (issue 6), against the real
//! binary: every route, every webhook validation rule, roles (401/403) per
//! route, secrets kept from viewers and from the log, relay.yaml hot reload
//! under load and on SIGHUP, the OpenAPI document (checked against the
//! router both ways and by `openapi-spec-validator`) and `/metrics` (parsed
//! by the reference Prometheus parser).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use relay::api::{Access, ROUTES};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// helpers

async fn call(
    relay: &Relay,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    request(
        method,
        &relay.url(path),
        token,
        body.map(|b| Bytes::from(b.to_string())),
    )
    .await
    .unwrap_or_else(|e| panic!("{method} {path}: relay unreachable: {e}"))
}

/// Runs `python3 tests/validators/<script>` with `input` on stdin; its
/// stdout on success. A missing interpreter or package fails the test.
fn python(script: &str, input: &str) -> String {
    let python = std::env::var("RELAY_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/validators")
        .join(script);
    let mut child = Command::new(&python)
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {python} ({e}): install Python 3, then `bash .ci/install-test-deps`")
        });
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("validator ran");
    let _ = writer.join();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Some(3) => {
            panic!("{script}: a package is missing: {stderr}\nrun `bash .ci/install-test-deps`")
        }
        _ => panic!("{script} rejected the input:\n{stderr}"),
    }
}

/// Polls `check` until it holds; fails with `what` after `timeout`.
async fn eventually(timeout: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Replaces a file the way deployers should: write a temporary file in the
/// same directory, then rename it into place.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, text).expect("write temp config");
    std::fs::rename(&tmp, path).expect("rename config into place");
}

async fn webhook_ids(relay: &Relay) -> Vec<String> {
    let (s, list) = call(relay, "GET", "/api/v1/webhooks", Some(ADMIN), None).await;
    assert_eq!(s, 200, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap().to_owned())
        .collect()
}

fn sorted(ids: &[String]) -> Vec<String> {
    let mut v = ids.to_vec();
    v.sort();
    v
}

/// One scrape of `/metrics`, parsed by the reference parser.
struct Scrape {
    families: HashMap<String, String>,
    samples: Vec<(String, HashMap<String, String>, f64)>,
}

impl Scrape {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    }
}

async fn scrape(relay: &Relay) -> Scrape {
    let (status, body) = relay.get("/metrics", None).await.expect("metrics");
    assert_eq!(status, 200, "{body}");
    let text = body
        .as_str()
        .expect("metrics are text, not JSON")
        .to_owned();
    let parsed: Value = serde_json::from_str(&python("prometheus_check.py", &text)).unwrap();
    let families = parsed["families"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let samples = parsed["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = s[1]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            (
                s[0].as_str().unwrap().to_owned(),
                labels,
                s[2].as_f64().unwrap(),
            )
        })
        .collect();
    Scrape { families, samples }
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

fn webhook_yaml(name: &str, url: &str) -> String {
    format!("  - name: {name}\n    url: {url}\n")
}

// ---------------------------------------------------------------------------
// OpenAPI

#[tokio::test(flavor = "multi_thread")]
async fn every_route_of_the_router_is_in_the_openapi_document_and_back() {
    let relay = Relay::start("").await;
    let (status, doc) = relay.get("/api/v1/openapi.json", None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        doc,
        serde_json::from_str::<Value>(relay::api::OPENAPI).unwrap(),
        "the served document is docs/openapi.json"
    );
    let methods = [
        "get", "put", "post", "delete", "patch", "head", "options", "trace",
    ];
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if methods.contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
                // Access as documented matches access as enforced.
                let route = ROUTES
                    .iter()
                    .find(|r| r.method.eq_ignore_ascii_case(method) && r.path == path);
                let Some(route) = route else { continue };
                let roles: Vec<String> = route
                    .access
                    .roles()
                    .iter()
                    .map(|r| {
                        serde_json::to_value(r)
                            .unwrap()
                            .as_str()
                            .unwrap()
                            .to_owned()
                    })
                    .collect();
                assert_eq!(
                    op["x-roles"],
                    json!(roles),
                    "{method} {path}: x-roles differs from the router"
                );
                let public = op.get("security") == Some(&json!([]));
                assert_eq!(
                    public,
                    route.access == Access::Public,
                    "{method} {path}: security differs from the router"
                );
                if !public {
                    for code in ["401", "403"] {
                        assert!(
                            op["responses"].get(code).is_some(),
                            "{method} {path}: {code} is not documented"
                        );
                    }
                }
            }
        }
    }
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "routes missing from docs/openapi.json: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "docs/openapi.json documents routes the router does not serve: {extra:?}"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

/// Calls every route (as admin, and the documented errors) and checks the
/// document with openapi-spec-validator and every answer against it.
#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_passes_openapi_spec_validator_and_every_route_answers_as_documented()
{
    let rx = Receiver::start().await;
    let extra = format!(
        "event_types:\n  finding_added: A new finding\nsources:\n  - {{ name: falco, kind: falco, type: finding_added }}\nincidents: {{ pagerduty: {{ secrets: [doc-pd-secret] }} }}\nwebhooks:\n{}",
        webhook_yaml("Doc Hook", &rx.url("/doc"))
    );
    let relay = Relay::start(&extra).await;
    let mut samples: Vec<Value> = Vec::new();
    let mut record = |method: &str, path: &str, status: u16, body: &Value| {
        samples.push(json!({"method": method, "path": path, "status": status, "body": body}));
    };
    macro_rules! hit {
        ($method:expr, $path:expr, $token:expr, $body:expr) => {{
            let (s, b) = call(&relay, $method, $path, $token, $body).await;
            record($method, $path, s, &b);
            (s, b)
        }};
    }
    let (s, _) = hit!("GET", "/healthz", None, None);
    assert_eq!(s, 200);
    let (s, _) = hit!("GET", "/metrics", None, None);
    assert_eq!(s, 200);
    let (s, spec) = hit!("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(s, 200);
    let (s, _) = hit!("GET", "/api/v1/event-types", Some(VIEWER), None);
    assert_eq!(s, 200);
    let (s, _) = hit!("GET", "/api/v1/plugins", Some(VIEWER), None);
    assert_eq!(s, 200);
    let event = json!({"type": "finding_added", "id": "doc-1", "data": {"title": "t"}});
    let (s, _) = hit!("POST", "/api/v1/events", Some(INGEST), Some(&event));
    assert_eq!(s, 202);
    let (s, _) = hit!(
        "POST",
        "/api/v1/events",
        Some(INGEST),
        Some(&json!({"type": "nope"}))
    );
    assert_eq!(s, 400);
    let (s, _) = hit!("POST", "/api/v1/events", Some(VIEWER), Some(&event));
    assert_eq!(s, 403);
    let (s, _) = hit!("POST", "/api/v1/events", None, Some(&event));
    assert_eq!(s, 401);
    let alert = json!({"rule": "Write below binary dir", "priority": "Error",
        "output": "File below a known binary directory opened for writing", "time": "2026-11-22T10:00:00Z"});
    let (s, _) = hit!("POST", "/api/v1/sources/falco", Some(INGEST), Some(&alert));
    assert_eq!(s, 202);
    let (s, _) = hit!(
        "POST",
        "/api/v1/sources/falco",
        Some(INGEST),
        Some(&json!({"rule": "r"}))
    );
    assert_eq!(s, 400);
    let (s, _) = hit!("POST", "/api/v1/sources/nope", Some(INGEST), Some(&alert));
    assert_eq!(s, 404);
    let (s, _) = hit!("POST", "/api/v1/sources/falco", Some(VIEWER), Some(&alert));
    assert_eq!(s, 403);
    rx.wait_for(2, Duration::from_secs(10)).await;
    let (s, _) = hit!("GET", "/api/v1/webhooks", Some(VIEWER), None);
    assert_eq!(s, 200);
    let create = json!({"name": "Doc API", "url": rx.url("/api"), "secret": "doc-secret",
        "headers": {"X-Tenant": "t"}, "body": {"title": "{{title}}"}, "event_types": ["finding_added"],
        "filter": {"severity": ["high"]}});
    let (s, created) = hit!("POST", "/api/v1/webhooks", Some(ADMIN), Some(&create));
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (s, _) = hit!(
        "POST",
        "/api/v1/webhooks",
        Some(ADMIN),
        Some(&json!({"name": "x", "url": "ftp://example.com"}))
    );
    assert_eq!(s, 422);
    let (s, _) = call(&relay, "POST", "/api/v1/webhooks", Some(ADMIN), None).await;
    assert_eq!(s, 400, "an empty body is malformed JSON");
    let (s, _) = hit!("GET", &format!("/api/v1/webhooks/{id}"), Some(VIEWER), None);
    assert_eq!(s, 200);
    let (s, _) = hit!("GET", "/api/v1/webhooks/nope", Some(VIEWER), None);
    assert_eq!(s, 404);
    let (s, _) = hit!(
        "PUT",
        &format!("/api/v1/webhooks/{id}"),
        Some(ADMIN),
        Some(&json!({"timeout_ms": 2000}))
    );
    assert_eq!(s, 200);
    let (s, _) = hit!(
        "PUT",
        "/api/v1/webhooks/doc-hook",
        Some(ADMIN),
        Some(&json!({"name": "renamed"}))
    );
    assert_eq!(s, 409);
    let (s, _) = hit!("DELETE", "/api/v1/webhooks/doc-hook", Some(ADMIN), None);
    assert_eq!(s, 409);
    let (s, attempt) = hit!("POST", "/api/v1/webhooks/doc-hook/test", Some(ADMIN), None);
    assert_eq!(s, 200, "{attempt}");
    let (s, page) = hit!(
        "GET",
        "/api/v1/webhooks/doc-hook/deliveries?limit=1",
        Some(VIEWER),
        None
    );
    assert_eq!(s, 200);
    assert!(page["next"].is_string(), "{page}");
    let (s, _) = hit!(
        "GET",
        "/api/v1/webhooks/doc-hook/deliveries?status=bogus",
        Some(VIEWER),
        None
    );
    assert_eq!(s, 400);
    let delivery = page["data"][0]["delivery_id"].as_str().unwrap().to_owned();
    let (s, _) = hit!(
        "POST",
        &format!("/api/v1/deliveries/{delivery}/resend"),
        Some(ADMIN),
        None
    );
    assert_eq!(s, 202);
    let (s, _) = hit!("POST", "/api/v1/deliveries/nope/resend", Some(ADMIN), None);
    assert_eq!(s, 404);
    let (s, _) = hit!("POST", "/api/v1/events/doc-1/replay", Some(ADMIN), None);
    assert_eq!(s, 202);
    let (s, _) = hit!("GET", "/api/v1/events/doc-1", Some(VIEWER), None);
    assert_eq!(s, 200);
    let (s, _) = hit!("GET", "/api/v1/events/nope", Some(VIEWER), None);
    assert_eq!(s, 404);
    let (s, _) = hit!(
        "GET",
        "/api/v1/events?decision=delivered&limit=1",
        Some(VIEWER),
        None
    );
    assert_eq!(s, 200);
    let (s, _) = hit!("GET", "/api/v1/events?decision=bogus", Some(VIEWER), None);
    assert_eq!(s, 400);
    let (s, _) = hit!("GET", "/api/v1/incidents?state=open", Some(VIEWER), None);
    assert_eq!(s, 200);
    let (s, _) = hit!("GET", "/api/v1/incidents?state=bogus", Some(VIEWER), None);
    assert_eq!(s, 400);
    let (s, _) = hit!("GET", "/api/v1/incidents/nope", Some(VIEWER), None);
    assert_eq!(s, 404);
    let (s, _) = hit!("POST", "/api/v1/incidents/nope/ack", Some(ADMIN), None);
    assert_eq!(s, 404);
    let unsigned = json!({"event": {"event_type": "incident.acknowledged"}});
    let (s, _) = hit!("POST", "/api/v1/incidents/pagerduty", None, Some(&unsigned));
    assert_eq!(s, 401);
    let policy = json!({"name": "doc-policy", "match": {"severity": "high"},
        "steps": [{"notify": ["doc-hook"], "wait_s": 60}], "repeat": 1});
    let (s, b) = hit!("POST", "/api/v1/escalations", Some(ADMIN), Some(&policy));
    assert_eq!(s, 201, "{b}");
    let (s, _) = hit!("POST", "/api/v1/escalations", Some(ADMIN), Some(&policy));
    assert_eq!(s, 409);
    let (s, _) = hit!(
        "POST",
        "/api/v1/escalations",
        Some(ADMIN),
        Some(&json!({"name": "bad", "steps": []}))
    );
    assert_eq!(s, 422);
    let (s, b) = hit!("GET", "/api/v1/escalations", Some(VIEWER), None);
    assert_eq!(s, 200, "{b}");
    let (s, _) = hit!(
        "DELETE",
        "/api/v1/escalations/doc-policy",
        Some(ADMIN),
        None
    );
    assert_eq!(s, 204);
    let (s, _) = hit!(
        "DELETE",
        "/api/v1/escalations/doc-policy",
        Some(ADMIN),
        None
    );
    assert_eq!(s, 404);
    let (s, all) = hit!("POST", "/api/v1/test", Some(ADMIN), None);
    assert_eq!(s, 200, "{all}");
    let (s, _) = hit!("POST", "/api/v1/test", Some(VIEWER), None);
    assert_eq!(s, 403);
    let (s, _) = hit!(
        "DELETE",
        &format!("/api/v1/webhooks/{id}"),
        Some(ADMIN),
        None
    );
    assert_eq!(s, 204);
    // Every route was called at least once.
    for r in ROUTES {
        let re = regex_for(r.path);
        assert!(
            samples
                .iter()
                .any(|s| s["method"] == r.method && re(s["path"].as_str().unwrap())),
            "{} {} was not exercised",
            r.method,
            r.path
        );
    }
    let report = python(
        "openapi_check.py",
        &json!({"spec": spec, "samples": samples}).to_string(),
    );
    assert!(report.contains("document valid"), "{report}");
}

/// A matcher for a route template such as `/api/v1/webhooks/{id}`.
fn regex_for(template: &'static str) -> impl Fn(&str) -> bool {
    move |path: &str| {
        let path = path.split('?').next().unwrap_or("");
        let (t, p): (Vec<&str>, Vec<&str>) =
            (template.split('/').collect(), path.split('/').collect());
        t.len() == p.len()
            && t.iter()
                .zip(&p)
                .all(|(a, b)| (a.starts_with('{') && !b.is_empty()) || a == b)
    }
}

// ---------------------------------------------------------------------------
// Validation

/// Every rule of issue 6 (and §6): each failure is a 422 whose message
/// starts with the field at fault.
#[tokio::test(flavor = "multi_thread")]
async fn every_webhook_validation_rule_answers_422_naming_the_field() {
    // A catalogue of event types, so that an undeclared one is refused.
    let mut relay = Relay::start("event_types:\n  finding_added: A new finding\n").await;
    let u = "https://hooks.example.com/x";
    let ok = |extra: Value| {
        let mut v = json!({"name": "Rule", "url": u});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("name missing", json!({"url": u}), "name"),
        ("name empty", ok(json!({"name": "  "})), "name"),
        ("name not a string", ok(json!({"name": 5})), "name"),
        ("url missing", json!({"name": "x"}), "url"),
        (
            "url scheme ftp",
            ok(json!({"url": "ftp://example.com/x"})),
            "url",
        ),
        ("url not a URL", ok(json!({"url": "not a url"})), "url"),
        (
            "syslog url without port",
            ok(json!({"url": "tcp://siem.example.com"})),
            "url",
        ),
        (
            "url at a private address",
            ok(json!({"url": "https://10.1.2.3/x"})),
            "url",
        ),
        (
            "url at cloud metadata",
            ok(json!({"url": "https://169.254.169.254/"})),
            "url",
        ),
        (
            "url with ${ENV}",
            ok(json!({"url": "https://h.example.com/${HOME}"})),
            "url",
        ),
        (
            "method not one of five",
            ok(json!({"method": "TRACE"})),
            "method",
        ),
        ("method not a string", ok(json!({"method": 1})), "method"),
        (
            "header key with a space",
            ok(json!({"headers": {"X Tenant": "a"}})),
            "headers",
        ),
        (
            "header key with a colon",
            ok(json!({"headers": {"X:A": "a"}})),
            "headers",
        ),
        (
            "header keys equal case-insensitively",
            ok(json!({"headers": {"X-Tenant": "a", "x-tenant": "b"}})),
            "headers",
        ),
        (
            "header value with a newline",
            ok(json!({"headers": {"X-A": "a\nb"}})),
            "headers",
        ),
        (
            "header value with ${ENV}",
            ok(json!({"headers": {"X-A": "${HOME}"}})),
            "headers",
        ),
        (
            "headers not a map",
            ok(json!({"headers": ["X-A"]})),
            "headers",
        ),
        (
            "body string not JSON",
            ok(json!({"body": "{not json"})),
            "body",
        ),
        (
            "body with GET",
            ok(json!({"method": "GET", "body": {"a": 1}})),
            "body",
        ),
        (
            "body string with GET",
            ok(json!({"method": "get", "body": "{\"a\": 1}"})),
            "body",
        ),
        (
            "retry_count above 10",
            ok(json!({"retry_count": 11})),
            "retry_count",
        ),
        (
            "retry_count negative",
            ok(json!({"retry_count": -1})),
            "retry_count",
        ),
        (
            "retry_count not a number",
            ok(json!({"retry_count": "3"})),
            "retry_count",
        ),
        (
            "timeout_ms below 1000",
            ok(json!({"timeout_ms": 999})),
            "timeout_ms",
        ),
        (
            "timeout_ms above 30000",
            ok(json!({"timeout_ms": 30001})),
            "timeout_ms",
        ),
        (
            "unknown format",
            ok(json!({"format": "no-such-format"})),
            "format",
        ),
        (
            "unknown destination",
            ok(json!({"destination": "no-such-destination"})),
            "destination",
        ),
        (
            "options the formatter refuses",
            ok(json!({"format": "slack", "options": {"title_field": ""}})),
            "options",
        ),
        ("unknown field", ok(json!({"colour": "red"})), "colour"),
        ("id given", ok(json!({"id": "mine"})), "id"),
        (
            "signature profile unknown",
            ok(json!({"signature": "md5"})),
            "signature",
        ),
        (
            "signature_header with a space",
            ok(json!({"signature_header": "x sig"})),
            "signature_header",
        ),
        ("secret empty", ok(json!({"secret": ""})), "secret"),
        (
            "standard profile without whsec_",
            ok(json!({"signature": "standard", "secret": "plain"})),
            "secret",
        ),
        ("secret with $$", ok(json!({"secret": "a$$b"})), "secret"),
        (
            "event type invalid",
            ok(json!({"event_types": ["bad type"]})),
            "event_types",
        ),
        (
            "is_active not a boolean",
            ok(json!({"is_active": "yes"})),
            "is_active",
        ),
    ];
    for (what, body, field) in &cases {
        let (s, b) = call(&relay, "POST", "/api/v1/webhooks", Some(ADMIN), Some(body)).await;
        assert_eq!(s, 422, "{what}: {body} → {b}");
        assert_eq!(error_code(&b), "invalid_webhook", "{what}: {b}");
        assert!(
            error_message(&b).starts_with(field),
            "{what}: the message must name {field}: {b}"
        );
    }
    // Rules whose field another rule also names: the message must give this
    // rule's reason too. Every refusal is collected, so one run lists each
    // rule the relay no longer enforces.
    let syslog = "tcp://siem.example.com:514";
    let with_reason: Vec<(&str, Value, &str, &str)> = vec![
        (
            "syslog url with a destination",
            ok(
                json!({"url": syslog, "format": "syslog", "destination": "splunk_hec",
                      "destination_options": {"token": "t0k"}}),
            ),
            "destination",
            "takes no destination plugin",
        ),
        (
            "syslog url with format json",
            ok(json!({"url": syslog})),
            "format",
            "needs a line format",
        ),
        (
            "event type not declared",
            ok(json!({"event_types": ["finding_added", "finding_removed"]})),
            "event_types[1]",
            "\"finding_removed\" is not declared under event_types",
        ),
        (
            "options the destination plugin refuses",
            ok(json!({"destination": "splunk_hec", "destination_options": {"token": ""}})),
            "destination_options",
            "token: must not be empty",
        ),
    ];
    let mut not_refused = Vec::new();
    for (what, body, field, reason) in &with_reason {
        let (s, b) = call(&relay, "POST", "/api/v1/webhooks", Some(ADMIN), Some(body)).await;
        let m = error_message(&b);
        if !(s == 422
            && error_code(&b) == "invalid_webhook"
            && m.starts_with(field)
            && m.contains(reason))
        {
            not_refused.push(format!("{what}: {s} {b}"));
        }
    }
    assert!(
        not_refused.is_empty(),
        "each must answer 422 naming the field and the reason:\n{}",
        not_refused.join("\n")
    );
    // Not an object, and not JSON.
    let (s, b) = call(
        &relay,
        "POST",
        "/api/v1/webhooks",
        Some(ADMIN),
        Some(&json!([1])),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    let (s, b) = request(
        "POST",
        &relay.url("/api/v1/webhooks"),
        Some(ADMIN),
        Some(Bytes::from("{\"name\":")),
    )
    .await
    .unwrap();
    assert_eq!((s, error_code(&b)), (400, "malformed_json"), "{b}");
    // Nothing was created by any of that.
    assert!(webhook_ids(&relay).await.is_empty());

    // The accepted forms of the same fields.
    for body in [
        ok(
            json!({"method": "put", "headers": {"X-Tenant": "a", "Authorization": "Bearer {{id}}"},
                  "body": "{\"t\": \"{{title}}\"}", "retry_count": 0, "timeout_ms": 1000}),
        ),
        ok(json!({"method": "GET", "retry_count": 10, "timeout_ms": 30000})),
        ok(json!({"format": "slack", "options": {"title_field": "title"}})),
        ok(
            json!({"url": "http://127.0.0.1:9/plain-http", "signature": "standard",
                  "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
        ),
    ] {
        let (s, b) = call(&relay, "POST", "/api/v1/webhooks", Some(ADMIN), Some(&body)).await;
        assert_eq!(s, 201, "{body} → {b}");
    }

    // The same rules on a partial update; a refused update changes nothing.
    let (_, w) = call(
        &relay,
        "POST",
        "/api/v1/webhooks",
        Some(ADMIN),
        Some(&ok(
            json!({"body": {"a": "{{title}}"}, "headers": {"X-A": "1"}}),
        )),
    )
    .await;
    let path = format!("/api/v1/webhooks/{}", w["id"].as_str().unwrap());
    let updates: Vec<(&str, Value, &str)> = vec![
        ("GET while a body is set", json!({"method": "GET"}), "body"),
        ("method", json!({"method": "OPTIONS"}), "method"),
        ("retry_count", json!({"retry_count": 11}), "retry_count"),
        ("timeout_ms", json!({"timeout_ms": 100}), "timeout_ms"),
        ("header key", json!({"headers": {"A B": "1"}}), "headers"),
        ("url", json!({"url": "gopher://x.example"}), "url"),
        ("url removed", json!({"url": null}), "url"),
        ("name emptied", json!({"name": ""}), "name"),
        ("format", json!({"format": "nope"}), "format"),
        ("unknown field", json!({"colour": 1}), "colour"),
        ("id", json!({"id": "other"}), "id"),
        ("is_active", json!({"is_active": 1}), "is_active"),
    ];
    for (what, body, field) in &updates {
        let (s, b) = call(&relay, "PUT", &path, Some(ADMIN), Some(body)).await;
        assert_eq!(s, 422, "update {what}: {b}");
        assert!(
            error_message(&b).starts_with(field),
            "update {what}: the message must name {field}: {b}"
        );
    }
    let (_, after) = call(&relay, "GET", &path, Some(ADMIN), None).await;
    assert_eq!(after, w, "refused updates changed the webhook");

    // http:// needs network.allow_http.
    let text = std::fs::read_to_string(&relay.config_path).unwrap();
    std::fs::write(
        &relay.config_path,
        text.replace("allow_http: true", "allow_http: false"),
    )
    .unwrap();
    relay.restart().await;
    let (s, b) = call(
        &relay,
        "POST",
        "/api/v1/webhooks",
        Some(ADMIN),
        Some(&ok(json!({"url": "http://hooks.example.com/x"}))),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    assert!(
        error_message(&b).starts_with("url") && error_message(&b).contains("allow_http"),
        "{b}"
    );
}

// ---------------------------------------------------------------------------
// CRUD

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn sha256_signature(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

on_both_stores! {
async fn webhooks_are_created_read_partially_updated_deleted_and_listed_newest_first(backend) {
    let rx = Receiver::start().await;
    let relay = backend.start("").await;
    let secret = "crud-signing-secret-1";
    let create = json!({
        "name": "Alpha", "url": rx.url("/alpha"), "secret": secret,
        "headers": {"X-Tenant": "acme", "Authorization": "Bearer hdr-crud-1"},
        "body": {"text": "{{title}}", "n": "{{count}}"},
        "event_types": ["*"], "retry_count": 2, "timeout_ms": 4000
    });
    let (s, a) = call(
        &relay,
        "POST",
        "/api/v1/webhooks",
        Some(ADMIN),
        Some(&create),
    )
    .await;
    assert_eq!(s, 201, "{a}");
    let id = a["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wh_"), "{a}");
    assert_eq!(a["source"], "api");
    assert_eq!(a["name"], "Alpha");
    assert_eq!(a["url"], rx.url("/alpha"));
    assert_eq!(a["method"], "POST");
    assert_eq!(a["format"], "json");
    assert_eq!(a["signature"], "sha256");
    assert_eq!(a["secret"], "[redacted]", "the secret is never returned");
    assert_eq!(a["headers"], create["headers"]);
    assert_eq!(a["body"], create["body"]);
    assert_eq!(
        (a["retry_count"].as_u64(), a["timeout_ms"].as_u64()),
        (Some(2), Some(4000))
    );
    assert_eq!(
        (a["is_active"].as_bool(), a["failure_count"].as_u64()),
        (Some(true), Some(0))
    );
    assert_eq!(a["created_at"], a["updated_at"]);

    let (s, got) = call(
        &relay,
        "GET",
        &format!("/api/v1/webhooks/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!((s, &got), (200, &a));

    // Newest first.
    let mut ids = vec![id.clone()];
    for name in ["Bravo", "Charlie"] {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (s, w) = call(
            &relay,
            "POST",
            "/api/v1/webhooks",
            Some(ADMIN),
            Some(&json!({"name": name, "url": rx.url(&format!("/{name}"))})),
        )
        .await;
        assert_eq!(s, 201, "{w}");
        ids.push(w["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    assert_eq!(webhook_ids(&relay).await, ids, "newest first");

    // A partial update changes only what it names.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (s, u) = call(
        &relay,
        "PUT",
        &format!("/api/v1/webhooks/{id}"),
        Some(ADMIN),
        Some(&json!({"timeout_ms": 6000})),
    )
    .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["timeout_ms"], 6000);
    for field in [
        "name",
        "url",
        "headers",
        "body",
        "event_types",
        "retry_count",
        "secret",
        "created_at",
        "id",
        "source",
    ] {
        assert_eq!(
            u[field], a[field],
            "{field} changed on an update of timeout_ms"
        );
    }
    assert!(u["updated_at"].as_str() > a["updated_at"].as_str(), "{u}");
    let (_, u2) = call(
        &relay,
        "PUT",
        &format!("/api/v1/webhooks/{id}"),
        Some(ADMIN),
        Some(&json!({"name": "Alpha renamed", "headers": {"X-Tenant": "globex"}})),
    )
    .await;
    assert_eq!(
        (u2["name"].as_str(), u2["timeout_ms"].as_u64()),
        (Some("Alpha renamed"), Some(6000))
    );
    assert_eq!(u2["headers"], json!({"X-Tenant": "globex"}));

    // The secret, never shown, still signs.
    let (s, attempt) = call(
        &relay,
        "POST",
        &format!("/api/v1/webhooks/{id}/test"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, 200, "{attempt}");
    assert_eq!(attempt["status"], "succeeded", "{attempt}");
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let r = &got[0];
    assert_eq!(r.path, "/alpha");
    assert_eq!(r.header("x-tenant"), Some("globex"));
    assert_eq!(
        r.header("x-webhook-signature"),
        Some(sha256_signature(secret, &r.body).as_str()),
        "signed with the secret given at creation"
    );

    // Delete.
    let bravo = &ids[1];
    let (s, b) = request(
        "DELETE",
        &relay.url(&format!("/api/v1/webhooks/{bravo}")),
        Some(ADMIN),
        None,
    )
    .await
    .unwrap();
    assert_eq!(s, 204, "{b}");
    let (s, b) = call(
        &relay,
        "GET",
        &format!("/api/v1/webhooks/{bravo}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!((s, error_code(&b)), (404, "not_found"));
    assert!(!webhook_ids(&relay).await.contains(bravo));
    let (s, _) = request(
        "DELETE",
        &relay.url(&format!("/api/v1/webhooks/{bravo}")),
        Some(ADMIN),
        None,
    )
    .await
    .unwrap();
    assert_eq!(s, 404);
    let (s, _) = call(
        &relay,
        "PUT",
        "/api/v1/webhooks/nope",
        Some(ADMIN),
        Some(&json!({"name": "x"})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &relay,
        "POST",
        "/api/v1/webhooks/nope/test",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, 404);

    // API webhooks survive a restart (they live in the store).
    let mut relay = relay;
    relay.restart().await;
    let (s, after) = call(
        &relay,
        "GET",
        &format!("/api/v1/webhooks/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(after["name"], "Alpha renamed");
}
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_from_relay_yaml_refuse_changes_with_409_except_is_active() {
    let rx = Receiver::start().await;
    let relay = Relay::start(&format!(
        "webhooks:\n{}",
        webhook_yaml("Config Hook", &rx.url("/c"))
    ))
    .await;
    let (s, w) = call(
        &relay,
        "GET",
        "/api/v1/webhooks/config-hook",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(w["source"], "config");
    for body in [
        json!({"name": "renamed"}),
        json!({"timeout_ms": 2000, "is_active": false}),
        json!({"url": rx.url("/elsewhere")}),
    ] {
        let (s, b) = call(
            &relay,
            "PUT",
            "/api/v1/webhooks/config-hook",
            Some(ADMIN),
            Some(&body),
        )
        .await;
        assert_eq!((s, error_code(&b)), (409, "read_only"), "{body}: {b}");
        let m = error_message(&b);
        assert!(m.contains("relay.yaml") && m.contains("is_active"), "{b}");
    }
    let (s, b) = request(
        "DELETE",
        &relay.url("/api/v1/webhooks/config-hook"),
        Some(ADMIN),
        None,
    )
    .await
    .unwrap();
    assert_eq!((s, error_code(&b)), (409, "read_only"), "{b}");
    assert!(error_message(&b).contains("relay.yaml"), "{b}");
    let (_, still) = call(
        &relay,
        "GET",
        "/api/v1/webhooks/config-hook",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(still["name"], "Config Hook");

    let (s, off) = call(
        &relay,
        "PUT",
        "/api/v1/webhooks/config-hook",
        Some(ADMIN),
        Some(&json!({"is_active": false})),
    )
    .await;
    assert_eq!((s, off["is_active"].as_bool()), (200, Some(false)), "{off}");
    // While disabled, its deliveries are recorded as skipped, not sent.
    let (s, _) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "t", "id": "while-off"}),
        )
        .await;
    assert_eq!(s, 202);
    relay
        .wait_history("config-hook", Duration::from_secs(10), |h| {
            h.iter()
                .any(|a| a["event_id"] == "while-off" && a["status"] == "skipped")
        })
        .await;
    let (s, on) = call(
        &relay,
        "PUT",
        "/api/v1/webhooks/config-hook",
        Some(ADMIN),
        Some(&json!({"is_active": true})),
    )
    .await;
    assert_eq!((s, on["is_active"].as_bool()), (200, Some(true)), "{on}");
    assert!(rx.received().is_empty(), "nothing was sent while disabled");
}

on_both_stores! {
async fn reenabling_a_tripped_webhook_resets_its_failure_counter(backend) {
    let rx = Receiver::start().await;
    for _ in 0..4 {
        rx.push(Reply::status(500));
    }
    let extra = format!(
        "delivery:\n  breaker_threshold: 2\nwebhooks:\n  - name: File Hook\n    url: {}\n    retry_count: 0\n",
        rx.url("/file")
    );
    let relay = backend.start(&extra).await;
    let (s, api) = call(
        &relay,
        "POST",
        "/api/v1/webhooks",
        Some(ADMIN),
        Some(&json!({"name": "Api Hook", "url": rx.url("/api"), "retry_count": 0})),
    )
    .await;
    assert_eq!(s, 201);
    let api_id = api["id"].as_str().unwrap().to_owned();
    for i in 0..2 {
        let (s, b) = relay
            .post(
                "/api/v1/events",
                Some(INGEST),
                &json!({"type": "t", "id": format!("trip-{i}")}),
            )
            .await;
        assert_eq!(
            (s, b["accepted"][0]["deliveries"].as_u64()),
            (202, Some(2)),
            "{b}"
        );
    }
    for id in ["file-hook", api_id.as_str()] {
        let path = format!("/api/v1/webhooks/{id}");
        // (Generous: on a loaded 2-core CI machine both stores' tests
        // run at once; the wait ends as soon as the breaker has tripped.)
        // Each state the webhook shows on the way is printed, so a wait
        // that times out says where it stopped (it did once in CI).
        let mut seen = String::new();
        eventually(
            Duration::from_secs(30),
            &format!("{id} trips"),
            async || {
                let (_, w) = call(&relay, "GET", &path, Some(ADMIN), None).await;
                let now = format!("is_active {} failure_count {}", w["is_active"], w["failure_count"]);
                if now != seen {
                    eprintln!("{id}: {now}");
                    seen = now;
                }
                w["is_active"] == false && w["failure_count"] == 2
            },
        )
        .await;
        let (s, w) = call(
            &relay,
            "PUT",
            &path,
            Some(ADMIN),
            Some(&json!({"is_active": true})),
        )
        .await;
        assert_eq!(s, 200, "{w}");
        assert_eq!(
            (w["is_active"].as_bool(), w["failure_count"].as_u64()),
            (Some(true), Some(0)),
            "{w}"
        );
        let (_, w) = call(&relay, "GET", &path, Some(VIEWER), None).await;
        assert_eq!(w["failure_count"], 0);
    }
    // Delivering again works (the receiver's script is used up: 200s now).
    let (s, _) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "t", "id": "after"}),
        )
        .await;
    assert_eq!(s, 202);
    relay
        .wait_history(&api_id, Duration::from_secs(10), |h| {
            h.iter()
                .any(|a| a["event_id"] == "after" && a["success"] == true)
        })
        .await;
}
}

// ---------------------------------------------------------------------------
// Delivery history filters

on_both_stores! {
async fn deliveries_filter_by_status_success_since_and_page_with_a_cursor(backend) {
    let rx = Receiver::start().await;
    for _ in 0..3 {
        rx.push(Reply::status(500));
    }
    let extra = format!(
        "webhooks:\n  - name: Hist\n    url: {}\n    retry_count: 0\n",
        rx.url("/h")
    );
    let relay = backend.start(&extra).await;
    let t0 = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    for i in 0..7 {
        let (s, _) = relay
            .post(
                "/api/v1/events",
                Some(INGEST),
                &json!({"type": "t", "id": format!("h-{i}")}),
            )
            .await;
        assert_eq!(s, 202);
    }
    let all = relay
        .wait_history("hist", Duration::from_secs(15), |h| h.len() == 7)
        .await;
    let list = |q: String| {
        let relay = &relay;
        async move {
            let (s, b) = call(
                relay,
                "GET",
                &format!("/api/v1/webhooks/hist/deliveries{q}"),
                Some(VIEWER),
                None,
            )
            .await;
            assert_eq!(s, 200, "{q}: {b}");
            (b["data"].as_array().unwrap().clone(), b["next"].clone())
        }
    };
    let (failed, _) = list("?status=failed".into()).await;
    assert_eq!(failed.len(), 3);
    assert!(
        failed
            .iter()
            .all(|a| a["status"] == "failed" && a["status_code"] == 500)
    );
    let (succeeded, _) = list("?status=succeeded".into()).await;
    assert_eq!(succeeded.len(), 4);
    let (ok, _) = list("?success=true".into()).await;
    assert_eq!(ok.len(), 4);
    assert!(ok.iter().all(|a| a["success"] == true));
    let (not_ok, _) = list("?success=false".into()).await;
    assert_eq!(not_ok.len(), 3);
    let (none, _) = list("?status=retrying".into()).await;
    assert!(none.is_empty());
    let fmt = &time::format_description::well_known::Rfc3339;
    let (since_start, _) = list(format!("?since={}", t0.format(fmt).unwrap())).await;
    assert_eq!(since_start.len(), 7);
    let future = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let (since_future, next) = list(format!("?since={}", future.format(fmt).unwrap())).await;
    assert!(since_future.is_empty() && next.is_null());
    let oldest_kept = all[3]["created_at"].as_str().unwrap();
    let (since_mid, _) = list(format!("?since={oldest_kept}")).await;
    assert!(
        since_mid.len() >= 4 && since_mid.len() <= 7,
        "{}",
        since_mid.len()
    );
    assert!(
        since_mid
            .iter()
            .all(|a| a["created_at"].as_str().unwrap() >= oldest_kept)
    );

    // Pages of 3: 3 + 3 + 1, newest first, no overlap, nothing missing.
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            None => "?limit=3".to_owned(),
            Some(c) => format!("?limit=3&cursor={c}"),
        };
        let (data, next) = list(q).await;
        pages.push(data);
        match next.as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages.len() < 10, "pagination does not end");
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 1]
    );
    let paged: Vec<&Value> = pages.iter().flatten().map(|a| &a["id"]).collect();
    let whole: Vec<&Value> = all.iter().map(|a| &a["id"]).collect();
    assert_eq!(
        paged, whole,
        "pages concatenate to the full list, newest first"
    );
    assert_eq!(paged.iter().collect::<HashSet<_>>().len(), 7);
    let times: Vec<&str> = all
        .iter()
        .map(|a| a["created_at"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    // Filters combine with paging.
    let (first, next) = list("?status=succeeded&limit=2".into()).await;
    assert_eq!(first.len(), 2);
    let (second, next2) = list(format!(
        "?status=succeeded&limit=2&cursor={}",
        next.as_str().unwrap()
    ))
    .await;
    assert_eq!(second.len(), 2);
    assert!(next2.is_null());
    assert!(
        first
            .iter()
            .chain(&second)
            .all(|a| a["status"] == "succeeded")
    );

    for (q, param) in [
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?status=done", "status"),
        ("?since=yesterday", "since"),
        ("?cursor=abc", "cursor"),
        ("?success=maybe", "success"),
        ("?colour=red", "colour"),
    ] {
        let (s, b) = call(
            &relay,
            "GET",
            &format!("/api/v1/webhooks/hist/deliveries{q}"),
            Some(VIEWER),
            None,
        )
        .await;
        assert_eq!((s, error_code(&b)), (400, "invalid_query"), "{q}: {b}");
        assert!(error_message(&b).contains(param), "{q}: {b}");
    }
    let (s, _) = call(
        &relay,
        "GET",
        "/api/v1/webhooks/nope/deliveries",
        Some(VIEWER),
        None,
    )
    .await;
    assert_eq!(s, 404);
}
}

// ---------------------------------------------------------------------------
// Roles and secrets

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_401_or_403_by_role_and_no_secret_reaches_a_viewer_or_the_log() {
    let rx = Receiver::start().await;
    let webhook_secrets = ["file-signing-secret-Q1", "api-signing-secret-Q5"];
    let other_secrets = [
        "hdr-authorization-secret-Q2",
        "x-api-key-secret-Q3",
        "url-path-secret-Q4",
        "api-auth-token-secret-Q6",
        "option-api-key-secret-Q7",
    ];
    let tokens = [INGEST, ADMIN, VIEWER];
    let extra = format!(
        r#"webhooks:
  - name: Guarded
    url: {url}
    secret: "file-signing-secret-Q1"
    headers:
      Authorization: "Bearer hdr-authorization-secret-Q2"
      X-Api-Key: "x-api-key-secret-Q3"
      X-Tenant: acme
"#,
        url = rx.url("/hook/url-path-secret-Q4")
    );
    let relay = Relay::start(&extra).await;
    let (s, api) = call(
        &relay,
        "POST",
        "/api/v1/webhooks",
        Some(ADMIN),
        Some(
            &json!({"name": "Api Guarded", "url": rx.url("/api/url-path-secret-Q4"),
            "secret": "api-signing-secret-Q5",
            "headers": {"X-Auth-Token": "api-auth-token-secret-Q6", "X-Tenant": "acme"},
            "options": {"api_key": "option-api-key-secret-Q7", "channel": "#sec"}}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{api}");
    let (s, _) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "t", "id": "role-1", "data": {"title": "x"}}),
        )
        .await;
    assert_eq!(s, 202);
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    assert!(
        got.iter()
            .any(|r| r.header("x-api-key") == Some("x-api-key-secret-Q3")),
        "secret headers are sent"
    );
    let history = relay
        .wait_history("guarded", Duration::from_secs(10), |h| !h.is_empty())
        .await;
    let delivery_id = history[0]["delivery_id"].as_str().unwrap().to_owned();

    let callers: [(&str, Option<&str>); 6] = [
        ("no token", None),
        ("wrong token", Some("wrong-token-0123456789")),
        ("token prefix", Some(&ADMIN[..ADMIN.len() - 1])),
        ("ingest", Some(INGEST)),
        ("viewer", Some(VIEWER)),
        ("admin", Some(ADMIN)),
    ];
    let mut viewer_answers = Vec::new();
    let mut admin_answers = Vec::new();
    for r in ROUTES {
        let id = match r.path {
            p if p.starts_with("/api/v1/events/") => "role-1",
            p if p.starts_with("/api/v1/deliveries/") => delivery_id.as_str(),
            _ => "guarded",
        };
        let path = r.path.replace("{id}", id);
        let body = match (r.method, r.path) {
            ("POST", "/api/v1/events") => Some(json!({"type": "t", "data": {"n": 1}})),
            ("POST", "/api/v1/webhooks") => {
                Some(json!({"name": "Made by roles", "url": rx.url("/made")}))
            }
            ("PUT", _) => Some(json!({"is_active": true})),
            _ => None,
        };
        for (who, token) in &callers {
            let (s, b) = call(&relay, r.method, &path, *token, body.as_ref()).await;
            let role = match *who {
                "ingest" => Some(relay::config::Role::Ingest),
                "viewer" => Some(relay::config::Role::Viewer),
                "admin" => Some(relay::config::Role::Admin),
                _ => None,
            };
            let what = format!("{} {} as {who}", r.method, r.path);
            // `/metrics` is public too while no token has the metrics role.
            if r.path == "/api/v1/incidents/pagerduty" {
                // Its authority is PagerDuty's signature of the body, not a
                // token: unsigned, it is refused whoever calls.
                assert!(matches!(s, 401 | 404), "{what}: answered {s}: {b}");
            } else if matches!(r.access, Access::Public | Access::Metrics) {
                assert!(s < 400, "{what}: a public route answered {s}: {b}");
            } else {
                match role {
                    None => {
                        assert_eq!((s, error_code(&b)), (401, "unauthorized"), "{what}: {b}");
                    }
                    Some(role) if r.access.roles().contains(&role) => {
                        assert!(
                            !matches!(s, 401 | 403) && s < 500,
                            "{what}: allowed but answered {s}: {b}"
                        );
                    }
                    Some(_) => {
                        assert_eq!((s, error_code(&b)), (403, "forbidden"), "{what}: {b}");
                    }
                }
            }
            match *who {
                "viewer" => viewer_answers.push((what, b)),
                "admin" => admin_answers.push((what, b)),
                _ => {}
            }
        }
    }
    // The viewer reads, with secrets redacted.
    let (_, list) = call(&relay, "GET", "/api/v1/webhooks", Some(VIEWER), None).await;
    let guarded = list
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == "guarded")
        .unwrap();
    assert_eq!(guarded["headers"]["Authorization"], "[redacted]");
    assert_eq!(guarded["headers"]["X-Api-Key"], "[redacted]");
    assert_eq!(
        guarded["headers"]["X-Tenant"], "acme",
        "plain headers stay visible"
    );
    assert!(
        guarded["url"].as_str().unwrap().ends_with("/[redacted]"),
        "{guarded}"
    );
    viewer_answers.push(("list".into(), list));
    for (what, body) in &viewer_answers {
        let text = body.to_string();
        for secret in webhook_secrets.iter().chain(&other_secrets).chain(&tokens) {
            assert!(
                !text.contains(secret),
                "{what}: a viewer saw {secret:?}: {text}"
            );
        }
    }
    for (what, body) in &admin_answers {
        let text = body.to_string();
        for secret in webhook_secrets.iter().chain(&tokens) {
            assert!(
                !text.contains(secret),
                "{what}: signing secrets and tokens are never returned: {text}"
            );
        }
    }
    let logs = relay.logs();
    assert!(!logs.is_empty());
    for secret in webhook_secrets.iter().chain(&other_secrets).chain(&tokens) {
        assert!(!logs.contains(secret), "the log holds {secret:?}:\n{logs}");
    }
}

// ---------------------------------------------------------------------------
// Metrics

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_events_outcomes_latency_queue_breakers_and_reloads_in_prometheus_text() {
    let good = Receiver::start().await;
    let bad = Receiver::start().await;
    for _ in 0..10 {
        bad.push(Reply::status(500));
    }
    let extra = format!(
        "delivery:\n  breaker_threshold: 1\nwebhooks:\n{}  - name: Bad\n    url: {}\n    retry_count: 0\n",
        webhook_yaml("Good", &good.url("/g")),
        bad.url("/b")
    );
    let relay = Relay::start(&extra).await;
    let before = scrape(&relay).await;
    for name in [
        "relay_events_accepted_total",
        "relay_delivery_attempts_total",
        "relay_delivery_attempt_duration_seconds",
        "relay_deliveries_pending",
        "relay_deliveries_due",
        "relay_webhook_active",
        "relay_webhook_consecutive_failures",
        "relay_plugin_calls_total",
        "relay_plugin_failures_total",
        "relay_config_reloads_total",
        "relay_config_last_reload_successful",
    ] {
        let family = name.trim_end_matches("_total");
        assert!(
            before.families.contains_key(family),
            "{name} is missing: {:?}",
            before.families
        );
    }
    assert_eq!(
        before.families["relay_delivery_attempt_duration_seconds"],
        "histogram"
    );
    assert_eq!(
        before.get("relay_webhook_active", &[("webhook", "bad")]),
        Some(1.0),
        "webhook samples: {:?}",
        before
            .samples
            .iter()
            .filter(|(n, _, _)| n.starts_with("relay_webhook"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        before.get("relay_deliveries_pending", &[("webhook", "good")]),
        Some(0.0)
    );

    let (s, _) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!([{"type": "t", "id": "m-1"}, {"type": "t", "id": "m-2"}]),
        )
        .await;
    assert_eq!(s, 202);
    // A repeated id is not a new event.
    let (s, _) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "t", "id": "m-1"}),
        )
        .await;
    assert_eq!(s, 202);
    good.wait_for(2, Duration::from_secs(10)).await;
    relay
        .wait_history("bad", Duration::from_secs(10), |h| h.len() == 2)
        .await;
    let after = scrape(&relay).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.get(name, labels).unwrap_or(0.0) - before.get(name, labels).unwrap_or(0.0)
    };
    assert_eq!(delta("relay_events_accepted_total", &[]), 2.0);
    assert_eq!(
        delta("relay_delivery_attempts_total", &[("status", "succeeded")]),
        2.0
    );
    // The first failure trips the breaker (threshold 1): the second event's
    // delivery to Bad is either failed (attempted first) or skipped.
    let failed = delta("relay_delivery_attempts_total", &[("status", "failed")]);
    let skipped = delta("relay_delivery_attempts_total", &[("status", "skipped")]);
    assert!(
        failed >= 1.0 && failed + skipped == 2.0,
        "failed {failed}, skipped {skipped}"
    );
    assert_eq!(
        delta("relay_delivery_attempt_duration_seconds_count", &[]),
        2.0 + failed,
        "every attempt that sent something is in the histogram"
    );
    assert_eq!(
        after.get(
            "relay_delivery_attempt_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        after.get("relay_delivery_attempt_duration_seconds_count", &[])
    );
    assert!(
        after
            .get("relay_delivery_attempt_duration_seconds_sum", &[])
            .unwrap()
            > 0.0
    );
    assert_eq!(
        after.get("relay_webhook_active", &[("webhook", "bad")]),
        Some(0.0)
    );
    assert_eq!(
        after.get("relay_webhook_active", &[("webhook", "good")]),
        Some(1.0)
    );
    assert!(
        after
            .get("relay_webhook_consecutive_failures", &[("webhook", "bad")])
            .unwrap()
            >= 1.0
    );

    // Queue depth: deliveries waiting in the store, here for a receiver
    // that is down (retries pending).
    let (s, w) = call(
        &relay,
        "POST",
        "/api/v1/webhooks",
        Some(ADMIN),
        Some(&json!({"name": "Down", "url": format!("http://127.0.0.1:{}/down", free_port()), "retry_count": 10})),
    )
    .await;
    assert_eq!(s, 201);
    let down = w["id"].as_str().unwrap().to_owned();
    let (s, _) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!([{"type": "t"}, {"type": "t"}, {"type": "t"}]),
        )
        .await;
    assert_eq!(s, 202);
    let mut pending = 0.0;
    eventually(
        Duration::from_secs(10),
        "three deliveries pending for the down receiver",
        async || {
            pending = scrape(&relay)
                .await
                .get("relay_deliveries_pending", &[("webhook", &down)])
                .unwrap_or(0.0);
            pending == 3.0
        },
    )
    .await;

    // Reload counters.
    let text = std::fs::read_to_string(&relay.config_path).unwrap();
    replace_file(&relay.config_path, &format!("{text}colour: red\n"));
    eventually(
        Duration::from_secs(10),
        "a refused reload is counted",
        async || {
            scrape(&relay)
                .await
                .get("relay_config_reloads_total", &[("result", "failed")])
                == Some(1.0)
        },
    )
    .await;
    assert_eq!(
        scrape(&relay)
            .await
            .get("relay_config_last_reload_successful", &[]),
        Some(0.0)
    );
    replace_file(
        &relay.config_path,
        &text.replace("breaker_threshold: 1", "breaker_threshold: 5"),
    );
    eventually(
        Duration::from_secs(10),
        "an applied reload is counted",
        async || {
            scrape(&relay)
                .await
                .get("relay_config_reloads_total", &[("result", "ok")])
                == Some(1.0)
        },
    )
    .await;
    assert_eq!(
        scrape(&relay)
            .await
            .get("relay_config_last_reload_successful", &[]),
        Some(1.0)
    );

    // No token needed, and nothing secret in it.
    let (s, body) = relay.get("/metrics", Some("not-a-token")).await.unwrap();
    assert_eq!(s, 200);
    for t in [INGEST, ADMIN, VIEWER] {
        assert!(!body.as_str().unwrap().contains(t));
    }
}

// ---------------------------------------------------------------------------
// Hot reload

/// One POST of the producer: its events, what the relay answered, and the
/// phase ("epoch") before and after it. Even epochs are stable phases; odd
/// ones are a change in progress.
#[derive(Debug, Clone)]
struct Posted {
    ids: Vec<String>,
    deliveries: Vec<u64>,
    epoch_before: usize,
    epoch_after: usize,
}

fn ids_received(rx: &Receiver) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in rx.received() {
        if let Some(id) = r.json()["id"].as_str() {
            *m.entry(id.to_owned()).or_default() += 1;
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn hot_reload_under_load_follows_the_file_and_loses_nothing_queued() {
    let receivers: BTreeMap<&str, Receiver> = [
        ("a", Receiver::start().await),
        ("b", Receiver::start().await),
        ("c", Receiver::start().await),
    ]
    .into_iter()
    .collect();
    // B stalls (one attempt at a time; the fourth takes 5 s), so a backlog
    // is queued for it when it is removed from the file.
    for _ in 0..3 {
        receivers["b"].push(Reply::status(200));
    }
    receivers["b"].push(Reply {
        delay: Duration::from_secs(5),
        ..Reply::status(200)
    });
    let head = "delivery:\n  retry_base_ms: 100\n  retry_max_ms: 400\n  concurrency_per_webhook: 1\nwebhooks:\n";
    let file_with = |names: &[&str]| -> String {
        let mut s = head.to_owned();
        for n in names {
            s += &webhook_yaml(&n.to_uppercase(), &receivers[n].url(&format!("/{n}")));
            s += "    timeout_ms: 20000\n";
        }
        s
    };
    let initial = file_with(&["a", "b"]);
    let relay = Relay::start(&initial).await;
    let full = std::fs::read_to_string(&relay.config_path).unwrap();
    let base = full.strip_suffix(&initial).unwrap().to_owned();
    let write =
        |names: &[&str]| replace_file(&relay.config_path, &(base.clone() + &file_with(names)));

    // The producer: batches of two events, as fast as the relay takes them
    // (bounded in count and time).
    let epoch = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let url = relay.url("/api/v1/events");
    let producer = {
        let (epoch, stop) = (epoch.clone(), stop.clone());
        tokio::spawn(async move {
            let mut posted = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            for n in 0..3000 {
                if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                    break;
                }
                let ids = vec![format!("ev-{n}-0"), format!("ev-{n}-1")];
                let body = json!([{"type": "t", "id": ids[0]}, {"type": "t", "id": ids[1]}]);
                let epoch_before = epoch.load(Ordering::SeqCst);
                let (s, b) = request(
                    "POST",
                    &url,
                    Some(INGEST),
                    Some(Bytes::from(body.to_string())),
                )
                .await
                .expect("post events");
                let epoch_after = epoch.load(Ordering::SeqCst);
                assert_eq!(s, 202, "{b}");
                let deliveries = b["accepted"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["deliveries"].as_u64().unwrap())
                    .collect();
                posted.push(Posted {
                    ids,
                    deliveries,
                    epoch_before,
                    epoch_after,
                });
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            posted
        })
    };
    let webhooks_are = |want: &'static [&'static str]| {
        let relay = &relay;
        async move {
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            eventually(
                Duration::from_secs(10),
                &format!("the webhooks become {want:?}"),
                async || sorted(&webhook_ids(relay).await) == want,
            )
            .await;
        }
    };
    let wait_more = |name: &'static str, more: usize| {
        let rx = receivers[name].clone();
        async move {
            let target = rx.received().len() + more;
            rx.wait_for(target, Duration::from_secs(20)).await;
        }
    };

    // Epoch 0: {A, B}.
    wait_more("a", 20).await;
    receivers["b"].wait_for(4, Duration::from_secs(20)).await;
    // Epoch 2: add C.
    epoch.store(1, Ordering::SeqCst);
    write(&["a", "b", "c"]);
    webhooks_are(&["a", "b", "c"]).await;
    epoch.store(2, Ordering::SeqCst);
    wait_more("c", 20).await;
    // Epoch 4: remove B (it has a backlog).
    epoch.store(3, Ordering::SeqCst);
    write(&["a", "c"]);
    webhooks_are(&["a", "c"]).await;
    epoch.store(4, Ordering::SeqCst);
    let backlog = scrape(&relay)
        .await
        .get("relay_deliveries_pending", &[("webhook", "b")])
        .unwrap_or(0.0);
    let b_count_at_removal = receivers["b"].received().len();
    wait_more("a", 20).await;
    // Epoch 6: a broken file is refused; the old configuration keeps working.
    epoch.store(5, Ordering::SeqCst);
    let good = base.clone() + &file_with(&["a", "c"]);
    let broken = format!("{good}    colour: red\n");
    let broken_line = broken.lines().count();
    replace_file(&relay.config_path, &broken);
    let expected_error = format!("{}:{broken_line}:", relay.config_path.display());
    eventually(
        Duration::from_secs(10),
        "the refused reload is logged with file:line:col",
        async || {
            relay.logs().lines().any(|l| {
                l.contains("ERROR")
                    && l.contains("reload refused")
                    && l.contains(&expected_error)
                    && l.contains("colour")
            })
        },
    )
    .await;
    epoch.store(6, Ordering::SeqCst);
    wait_more("a", 20).await;
    wait_more("c", 20).await;
    assert_eq!(sorted(&webhook_ids(&relay).await), vec!["a", "c"]);
    // Epoch 8: the fixed file brings B back; its backlog resumes.
    epoch.store(7, Ordering::SeqCst);
    write(&["a", "b", "c"]);
    webhooks_are(&["a", "b", "c"]).await;
    epoch.store(8, Ordering::SeqCst);
    wait_more("a", 20).await;
    stop.store(true, Ordering::SeqCst);
    let posted = producer.await.expect("producer");

    eprintln!(
        "hot reload: {} events posted, {} deliveries; B's backlog at removal {backlog}; received so far: a {} b {} c {}",
        posted.len() * 2,
        posted.iter().flat_map(|p| &p.deliveries).sum::<u64>(),
        receivers["a"].received().len(),
        receivers["b"].received().len(),
        receivers["c"].received().len()
    );
    // Quiescence: every delivery of every accepted event has arrived.
    let expected_total: u64 = posted.iter().flat_map(|p| &p.deliveries).sum();
    eventually(
        Duration::from_secs(90),
        "every delivery arrives",
        async || {
            let got: usize = receivers.values().map(|r| ids_received(r).len()).sum();
            got as u64 >= expected_total
        },
    )
    .await;
    let got: BTreeMap<&str, HashMap<String, usize>> = receivers
        .iter()
        .map(|(n, r)| (*n, ids_received(r)))
        .collect();
    let stable: BTreeMap<usize, BTreeSet<&str>> = [
        (0, ["a", "b"].into()),
        (2, ["a", "b", "c"].into()),
        (4, ["a", "c"].into()),
        (6, ["a", "c"].into()),
        (8, ["a", "b", "c"].into()),
    ]
    .into_iter()
    .collect();
    let mut per_epoch = BTreeMap::<usize, usize>::new();
    for p in &posted {
        for (id, n) in p.ids.iter().zip(&p.deliveries) {
            let reached: BTreeSet<&str> = got
                .iter()
                .filter(|(_, ids)| ids.contains_key(id))
                .map(|(n, _)| *n)
                .collect();
            // Nothing queued is lost: each delivery created reached its webhook.
            assert_eq!(reached.len() as u64, *n, "{id} ({p:?}) reached {reached:?}");
            if p.epoch_before == p.epoch_after && p.epoch_before % 2 == 0 {
                *per_epoch.entry(p.epoch_before).or_default() += 1;
                assert_eq!(
                    &reached, &stable[&p.epoch_before],
                    "{id}, accepted in epoch {}, went to the wrong webhooks",
                    p.epoch_before
                );
            }
        }
    }
    for e in [0, 2, 4, 6, 8] {
        assert!(
            per_epoch.get(&e).copied().unwrap_or(0) > 0,
            "no event in epoch {e}: {per_epoch:?}"
        );
    }
    assert!(
        backlog > 0.0,
        "B had nothing queued when removed (the test wants a backlog to prove it resumes)"
    );
    assert!(
        receivers["b"].received().len() > b_count_at_removal,
        "B's backlog resumed after it came back"
    );
    let logs = relay.logs();
    assert!(logs.contains("configuration reloaded"), "{logs}");
    assert!(
        logs.lines()
            .any(|l| l.contains("webhook removed") && l.contains("webhook=b")),
        "{logs}"
    );
    let m = scrape(&relay).await;
    assert_eq!(
        m.get("relay_config_reloads_total", &[("result", "ok")]),
        Some(3.0)
    );
    assert_eq!(
        m.get("relay_config_reloads_total", &[("result", "failed")]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_tokens_limits_and_webhooks_and_a_listen_change_asks_for_a_restart() {
    let rx = Receiver::start().await;
    let mut relay = Relay::start(&format!("webhooks:\n{}", webhook_yaml("A", &rx.url("/a")))).await;
    // Put the file behind a symlink whose directory never changes: the
    // watcher sees nothing, so only SIGHUP can apply an edit.
    relay.kill9();
    let real_dir = relay.dir.path().join("real");
    let link_dir = relay.dir.path().join("link");
    std::fs::create_dir_all(&real_dir).unwrap();
    std::fs::create_dir_all(&link_dir).unwrap();
    let real = real_dir.join("relay.yaml");
    std::fs::rename(&relay.config_path, &real).unwrap();
    std::os::unix::fs::symlink(&real, link_dir.join("relay.yaml")).unwrap();
    relay.config_path = link_dir.join("relay.yaml");
    relay.spawn().await;

    let original = std::fs::read_to_string(&real).unwrap();
    let new_token = "sighup-new-admin-token-0123456789";
    let other_port = free_port();
    let edited = original
        .replace(
            "    - { name: auditor, token: \"${T_VIEWER}\", role: viewer }\n",
            &format!("    - {{ name: auditor, token: \"${{T_VIEWER}}\", role: viewer }}\n    - {{ name: late, token: \"{new_token}\", role: admin }}\n"),
        )
        .replace(&format!("listen: 127.0.0.1:{}", relay.port), &format!("listen: 127.0.0.1:{other_port}"))
        + &webhook_yaml("D", &rx.url("/d"))
        + "limits:\n  max_body_bytes: 2048\n";
    assert_ne!(edited, original);
    replace_file(&real, &edited);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (s, _) = call(&relay, "GET", "/api/v1/webhooks", Some(new_token), None).await;
    assert_eq!(s, 401, "nothing applies before SIGHUP");

    relay.signal("HUP");
    eventually(
        Duration::from_secs(10),
        "SIGHUP applies the new token",
        async || {
            call(&relay, "GET", "/api/v1/webhooks", Some(new_token), None)
                .await
                .0
                == 200
        },
    )
    .await;
    assert_eq!(sorted(&webhook_ids(&relay).await), vec!["a", "d"]);
    let big = json!({"type": "t", "data": {"blob": "x".repeat(3000)}});
    let (s, b) = relay.post("/api/v1/events", Some(INGEST), &big).await;
    assert_eq!(
        (s, error_code(&b)),
        (413, "payload_too_large"),
        "the new limit applies: {b}"
    );
    let (s, _) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "t", "id": "small"}),
        )
        .await;
    assert_eq!(s, 202);
    rx.wait_for(2, Duration::from_secs(10)).await;
    // listen needs a restart: the old address keeps serving, the new one is not bound.
    assert!(
        request(
            "GET",
            &format!("http://127.0.0.1:{other_port}/healthz"),
            None,
            None
        )
        .await
        .is_err(),
        "the new listen address must not be bound without a restart"
    );
    let logs = relay.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains("listen") && l.contains("restart")),
        "{logs}"
    );
    assert!(logs.contains("trigger=\"SIGHUP\""), "{logs}");

    // The same content again: nothing to do.
    relay.signal("HUP");
    eventually(
        Duration::from_secs(10),
        "an unchanged file is skipped",
        async || relay.logs().contains("unchanged"),
    )
    .await;
    assert_eq!(
        scrape(&relay)
            .await
            .get("relay_config_reloads_total", &[("result", "ok")]),
        Some(1.0)
    );

    // A broken file on SIGHUP is refused; the running configuration stays.
    replace_file(&real, &edited.replace("role: admin }", "role: superuser }"));
    relay.signal("HUP");
    eventually(
        Duration::from_secs(10),
        "the refused reload is logged",
        async || {
            relay.logs().lines().any(|l| {
                l.contains("ERROR") && l.contains("reload refused") && l.contains("superuser")
            })
        },
    )
    .await;
    let (s, _) = call(&relay, "GET", "/api/v1/webhooks", Some(new_token), None).await;
    assert_eq!(s, 200, "the running configuration is kept");
    assert!(
        !relay.logs().contains(new_token),
        "tokens never reach the log"
    );
}
