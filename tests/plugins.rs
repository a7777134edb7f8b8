//! The plugin host end to end: hostile plugins fail only their delivery,
//! hot reload under load, `relay render` and `relay plugin new`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// Fixture and built-in components, built by build.rs.
fn wasm(package: &str) -> PathBuf {
    Path::new(relay_builtins::WASM_DIR).join(format!("{}.wasm", package.replace('-', "_")))
}

/// Installs a plugin the way deployers should: write a temp file, rename it in.
fn install(dir: &Path, name: &str, from: &Path) {
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    std::fs::copy(from, &tmp).expect("copy plugin");
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).expect("rename plugin into place");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_plugins_fail_only_their_own_delivery_with_a_clear_error() {
    let good = Receiver::start().await;
    let sink = Receiver::start().await;
    let plugins = tempfile::tempdir().unwrap();
    install(plugins.path(), "hostile", &wasm("relay-test-hostile"));
    let mut yaml = format!(
        "plugins: {{ dir: {}, memory_mb: 32, timeout_ms: 1000 }}\nwebhooks:\n  - name: Good\n    url: {}\n    retry_count: 0\n",
        plugins.path().display(),
        good.url("/")
    );
    for mode in ["loop", "memory", "trap", "huge", "garbage"] {
        yaml += &format!(
            "  - name: H {mode}\n    url: {}\n    format: hostile\n    options: {{ mode: {mode} }}\n    retry_count: 0\n",
            sink.url(&format!("/{mode}"))
        );
    }
    let relay = Relay::start(&yaml).await;
    for i in 0..3 {
        let (s, b) = relay
            .post(
                "/api/v1/events",
                Some(INGEST),
                &json!({"type": "x", "id": format!("h-{i}")}),
            )
            .await;
        assert_eq!(s, 202, "{b}");
    }
    let expected = [
        ("loop", "1000 ms time limit"),
        ("memory", "32 MiB memory limit"),
        ("trap", "trapped"),
        ("huge", "32 MiB memory limit"),
        ("garbage", "not valid JSON"),
    ];
    for (mode, needle) in expected {
        let h = relay
            .wait_history(&format!("h-{mode}"), Duration::from_secs(20), |h| {
                h.len() == 3
            })
            .await;
        for a in &h {
            assert_eq!(a["status"], "failed", "{mode}: {a}");
            assert_eq!(
                (a["error"]["kind"].as_str(), a["error"]["origin"].as_str()),
                (Some("plugin"), Some("plugin")),
                "{mode}: {a}"
            );
            let msg = a["error"]["message"].as_str().unwrap();
            assert!(
                msg.contains("hostile") && msg.contains(needle),
                "{mode}: {msg}"
            );
        }
        if mode == "loop" {
            let slowest = h
                .iter()
                .map(|a| a["duration_ms"].as_u64().unwrap())
                .max()
                .unwrap();
            println!("infinite loop stopped after at most {slowest} ms (limit 1000 ms)");
            assert!(slowest < 2500, "the loop ran {slowest} ms");
        }
    }
    // Nothing hostile reached the wire, and the good webhook got every event.
    assert!(sink.received().is_empty());
    let got = good.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3);
    // And the relay still serves.
    let (s, _) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "x", "id": "h-after"}),
        )
        .await;
    assert_eq!(s, 202);
    good.wait_for(4, Duration::from_secs(10)).await;
}

#[test]
fn a_component_of_the_wrong_world_or_bad_options_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    // A destination component used as a formatter.
    install(&plugins, "wrongworld", &wasm("relay-plugin-splunk-hec"));
    std::fs::write(plugins.join("notwasm.wasm"), b"this is not a component").unwrap();
    let cases = [
        (
            "format: wrongworld",
            "webhooks[0].format",
            "no formatter plugin named \"wrongworld\"",
        ),
        (
            "format: notwasm",
            "webhooks[0].format",
            "not a valid component",
        ),
        (
            "format: slack\n    options: { colour: red }",
            "webhooks[0].options",
            "colour",
        ),
        ("format: nosuch", "webhooks[0].format", "nosuch"),
    ];
    for (extra, field, needle) in cases {
        let path = dir.path().join("relay.yaml");
        std::fs::write(
            &path,
            format!(
                "listen: 127.0.0.1:{}\nstorage: {{sqlite: {}}}\nplugins: {{dir: {}}}\nwebhooks:\n  - name: a\n    url: https://example.com/\n    {extra}\n",
                free_port(),
                dir.path().join("r.db").display(),
                plugins.display()
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(["serve", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra}: {err}");
        assert!(
            err.contains(field) && err.contains(needle),
            "{extra}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_formatter_replaced_50_times_under_load_never_fails_a_delivery() {
    let rx = Receiver::start().await;
    let plugins = tempfile::tempdir().unwrap();
    install(plugins.path(), "echo", &wasm("relay-test-echo-a"));
    let yaml = format!(
        "plugins: {{ dir: {} }}\nwebhooks:\n  - name: Echo\n    url: {}\n    format: echo\n    retry_count: 0\n",
        plugins.path().display(),
        rx.url("/")
    );
    let relay = Relay::start(&yaml).await;
    let versions = [wasm("relay-test-echo-a"), wasm("relay-test-echo-b")];
    let url = relay.url("/api/v1/events");
    // Load: events posted continuously while the file is replaced, until
    // told to stop; the ids answered 202 come back.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut accepted = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && n < 100_000 {
                let id = format!("r-{n}");
                n += 1;
                let body = json!({"type": "x", "id": id}).to_string();
                if let Ok((202, _)) = request("POST", &url, Some(INGEST), Some(body.into())).await {
                    accepted.push(id);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            accepted
        }
    });
    let mut switch_lag = Vec::new();
    for i in 1..=50 {
        let (name, expect) = if i % 2 == 1 {
            (&versions[1], "b")
        } else {
            (&versions[0], "a")
        };
        install(plugins.path(), "echo", name);
        let renamed = Instant::now();
        // The new version must be in use within 2 s of the rename.
        let mut probe = 0;
        loop {
            probe += 1;
            let marker = format!("probe-{i}-{probe}");
            let (s, _) = relay
                .post(
                    "/api/v1/events",
                    Some(INGEST),
                    &json!({"type": "x", "id": marker}),
                )
                .await;
            assert_eq!(s, 202);
            let seen = wait_for_id(&rx, &marker).await;
            if seen.as_ref().and_then(Value::as_str) == Some(expect) {
                break;
            }
            assert!(
                renamed.elapsed() < Duration::from_secs(2),
                "version {expect} not in use 2 s after rename {i} (saw {seen:?})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        switch_lag.push(renamed.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    // A request in flight ends within its own 30 s timeout.
    let accepted = tokio::time::timeout(Duration::from_secs(40), load)
        .await
        .expect("the producer stops")
        .expect("the producer task");
    assert!(accepted.len() >= 50, "the load ran: {}", accepted.len());
    // Every accepted event arrives, exactly once: a delivery dropped, left
    // pending or sent twice during a swap would show here.
    let deadline = Instant::now() + Duration::from_secs(30);
    let counts = loop {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in rx.received() {
            if let Some(id) = r.json()["id"].as_str() {
                *counts.entry(id.to_owned()).or_default() += 1;
            }
        }
        let missing = accepted
            .iter()
            .filter(|id| !counts.contains_key(*id))
            .count();
        if missing == 0 {
            break counts;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} accepted events never arrived",
            accepted.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let twice: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let (s, failed) = relay
        .get(
            "/api/v1/webhooks/echo/deliveries?success=false&limit=1000",
            Some(ADMIN),
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(
        failed["data"],
        json!([]),
        "deliveries failed during reloads"
    );
    let (_, ok) = relay
        .get(
            "/api/v1/webhooks/echo/deliveries?success=true&limit=1000",
            Some(ADMIN),
        )
        .await
        .unwrap();
    assert!(!ok["data"].as_array().unwrap().is_empty());
    let mut by_version: HashMap<String, usize> = HashMap::new();
    for r in rx.received() {
        let v = r.json()["version"].as_str().unwrap_or("?").to_owned();
        *by_version.entry(v).or_default() += 1;
    }
    assert_eq!(
        by_version.keys().filter(|v| *v != "a" && *v != "b").count(),
        0,
        "{by_version:?}"
    );
    let worst = switch_lag.iter().max().unwrap();
    println!(
        "50 reloads under load: {} load events accepted and each delivered once; deliveries by version {by_version:?}, slowest switch {worst:?}",
        accepted.len()
    );
}

/// The `version` of the delivery of event `id`, once it arrived (≤ 2 s).
async fn wait_for_id(rx: &Receiver, id: &str) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Some(r) = rx.received().iter().rev().find(|r| r.json()["id"] == id) {
            return Some(r.json()["version"].clone());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Runs `relay` with `args`, which must succeed and print JSON.
fn render_json(args: &[&str]) -> Value {
    let out = relay_cmd(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the output is JSON")
}

fn relay_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(args)
        .output()
        .expect("run relay")
}

#[test]
fn render_prints_exactly_what_the_relay_would_send() {
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        json!({"type": "critical_finding", "id": "ev-1", "time": "2026-11-22T10:00:00Z",
               "data": {"title": "SQL injection in /login", "severity": "critical", "url": "https://example.com/f/1"}})
        .to_string(),
    )
    .unwrap();
    let ev = event.to_str().unwrap();
    let body = render_json(&["render", "--plugin", "slack", "--event", ev]);
    assert_eq!(body["blocks"][0]["text"]["text"], "SQL injection in /login");
    assert!(body["text"].as_str().unwrap().contains("SQL injection"));

    // A .wasm file with options, verbose.
    let hostile = wasm("relay-test-hostile");
    let out = relay_cmd(&[
        "render",
        "--plugin",
        hostile.to_str().unwrap(),
        "--event",
        ev,
        "--set",
        "mode=ok",
        "--set",
        "version=v7",
        "--verbose",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("POST https://example.invalid/hook\n"),
        "{text}"
    );
    assert!(text.contains("Content-Type: application/json"), "{text}");
    assert!(text.contains(r#"{"id":"ev-1","version":"v7"}"#), "{text}");

    // A destination alone, with its options.
    let out = relay_cmd(&[
        "render",
        "--plugin",
        "splunk_hec",
        "--set",
        "token=t0k",
        "--url",
        "https://splunk.example:8088",
        "--event",
        ev,
        "--verbose",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("POST https://splunk.example:8088/services/collector/event\n"),
        "{text}"
    );
    // Secret headers are redacted in --verbose (issue 16).
    assert!(text.contains("Authorization: [redacted]\n"), "{text}");
    assert!(!text.contains("t0k"), "{text}");

    // Errors: unknown plugin, bad options, a plugin that loops.
    let out = relay_cmd(&["render", "--plugin", "nosuch", "--event", ev]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"nosuch\" is not a loaded plugin"));
    let out = relay_cmd(&[
        "render",
        "--plugin",
        "slack",
        "--set",
        "colour=red",
        "--event",
        ev,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
    let out = relay_cmd(&[
        "render",
        "--plugin",
        hostile.to_str().unwrap(),
        "--set",
        "mode=loop",
        "--timeout-ms",
        "100",
        "--event",
        ev,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("100 ms time limit"));
}

#[test]
fn plugin_new_scaffolds_a_crate_that_tests_builds_and_renders() {
    let dir = tempfile::tempdir().unwrap();
    let out = relay_cmd(&[
        "plugin",
        "new",
        "my_alerts",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let krate = dir.path().join("my_alerts");
    let target = dir.path().join("target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let test = Command::new(&cargo)
        .args(["test", "--quiet"])
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "scaffold tests failed:\n{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(
        String::from_utf8_lossy(&test.stdout).contains("2 passed"),
        "{}",
        String::from_utf8_lossy(&test.stdout)
    );
    let build = Command::new(&cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let wasm_file = target.join("wasm32-wasip2/release/my_alerts.wasm");
    let event = dir.path().join("e.json");
    std::fs::write(
        &event,
        r#"{"type":"finding_added","id":"e1","data":{"title":"Open port"}}"#,
    )
    .unwrap();
    let body = render_json(&[
        "render",
        "--plugin",
        wasm_file.to_str().unwrap(),
        "--event",
        event.to_str().unwrap(),
    ]);
    assert_eq!(
        body,
        json!({"text": "[relay] finding_added: Open port", "event_id": "e1"})
    );
    // A bad name is refused.
    let out = relay_cmd(&[
        "plugin",
        "new",
        "Bad-Name",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_python_formatter_built_with_componentize_py_renders_like_a_rust_one() {
    let dir = tempfile::tempdir().unwrap();
    let out_wasm = dir.path().join("py_formatter.wasm");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/python_formatter/build.sh"
    );
    let build = Command::new("bash")
        .arg(script)
        .arg(&out_wasm)
        .output()
        .expect("bash");
    assert!(
        build.status.success(),
        "building the Python plugin failed (is componentize-py installed? run bash .ci/install-test-deps):\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let event = dir.path().join("e.json");
    std::fs::write(
        &event,
        r#"{"type":"finding_added","id":"py-1","data":{"title":"Weak TLS \"cipher\" ✓"}}"#,
    )
    .unwrap();
    let body = render_json(&[
        "render",
        "--plugin",
        out_wasm.to_str().unwrap(),
        "--event",
        event.to_str().unwrap(),
        "--set",
        "prefix=ALERT",
    ]);
    assert_eq!(
        body,
        json!({"text": "ALERT finding_added: Weak TLS \"cipher\" ✓", "event_id": "py-1"})
    );
    // Its options are checked by its own code.
    let out = relay_cmd(&[
        "render",
        "--plugin",
        out_wasm.to_str().unwrap(),
        "--event",
        event.to_str().unwrap(),
        "--set",
        "colour=red",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field colour"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_plugin_file_is_refused_reported_and_the_old_version_keeps_serving() {
    let rx = Receiver::start().await;
    let plugins = tempfile::tempdir().unwrap();
    install(plugins.path(), "echo", &wasm("relay-test-echo-a"));
    let yaml = format!(
        "plugins: {{ dir: {} }}\nwebhooks:\n  - name: Echo\n    url: {}\n    format: echo\n    retry_count: 0\n",
        plugins.path().display(),
        rx.url("/")
    );
    let relay = Relay::start(&yaml).await;
    let (s, list) = relay.get("/api/v1/plugins", Some(VIEWER)).await.unwrap();
    assert_eq!(s, 200);
    let echo = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "echo")
        .cloned()
        .expect("echo listed");
    assert_eq!(
        (echo["kind"].as_str(), echo["last_error"].clone()),
        (Some("formatter"), Value::Null)
    );
    let good_sha = echo["sha256"].as_str().unwrap().to_owned();
    assert_eq!(good_sha.len(), 64);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "slack" && p["source"] == "builtin")
    );

    // A half-written / corrupt file renamed into place.
    let tmp = plugins.path().join(".echo.tmp");
    std::fs::write(&tmp, b"\0asm garbage").unwrap();
    std::fs::rename(&tmp, plugins.path().join("echo.wasm")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let echo = loop {
        let (_, list) = relay.get("/api/v1/plugins", Some(VIEWER)).await.unwrap();
        let echo = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "echo")
            .cloned()
            .unwrap();
        if echo["last_error"].is_string() {
            break echo;
        }
        assert!(
            Instant::now() < deadline,
            "the broken file was never reported: {echo}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        echo["last_error"]
            .as_str()
            .unwrap()
            .contains("not a valid component"),
        "{echo}"
    );
    assert_eq!(
        echo["sha256"],
        good_sha.as_str(),
        "the loaded version is unchanged"
    );
    assert!(
        relay.logs().contains("plugin refused"),
        "the refusal is logged"
    );
    // Deliveries keep using the old version.
    relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "x", "id": "after-broken"}),
        )
        .await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json(), json!({"id": "after-broken", "version": "a"}));
}
