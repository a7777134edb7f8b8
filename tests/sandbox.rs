//! The plugin sandbox's limits end to end: time (a guest that sleeps in
//! WASI), clocks, the output caps (body size, requests per delivery, hosts a
//! destination may send to), and temporary plugin failures being retried.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
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

/// Runs `relay` with `args`, killed if it is still running after `limit`
/// (then the test fails: it hung).
fn relay_within(args: &[&str], limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run relay");
    loop {
        if child.try_wait().expect("wait for relay").is_some() {
            let out = child.wait_with_output().expect("relay output");
            return (out, started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("relay {args:?} was still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn event_file(dir: &Path) -> PathBuf {
    let path = dir.join("event.json");
    std::fs::write(
        &path,
        json!({"type": "x", "id": "ev-1", "time": "2026-11-22T10:00:00Z", "data": {}}).to_string(),
    )
    .unwrap();
    path
}

#[test]
fn render_stops_a_plugin_that_sleeps_at_its_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let event = event_file(dir.path());
    let plugin = wasm("relay-test-hostile");
    for mode in ["sleep", "sleep_create"] {
        let (out, took) = relay_within(
            &[
                "render",
                "--plugin",
                plugin.to_str().unwrap(),
                "--event",
                event.to_str().unwrap(),
                "--set",
                &format!("mode={mode}"),
                "--timeout-ms",
                "500",
            ],
            Duration::from_secs(30),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        println!("{mode}: stopped after {took:?}: {err}");
        assert_eq!(out.status.code(), Some(1), "{mode}: {err}");
        assert!(err.contains("500 ms time limit"), "{mode}: {err}");
        assert!(out.stdout.is_empty(), "{mode}");
        assert!(took < Duration::from_secs(10), "{mode}: took {took:?}");
    }
}

#[test]
fn plugins_read_a_fixed_clock_not_the_real_one() {
    let dir = tempfile::tempdir().unwrap();
    let event = event_file(dir.path());
    let plugin = wasm("relay-test-hostile");
    let (out, _) = relay_within(
        &[
            "render",
            "--plugin",
            plugin.to_str().unwrap(),
            "--event",
            event.to_str().unwrap(),
            "--set",
            "mode=clock",
        ],
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let seen: Value = serde_json::from_slice(&out.stdout).expect("the output is JSON");
    // 2000-01-01T00:00:00Z, whatever the date is; and the monotonic clock
    // does not move across the guest's 20 ms sleep.
    assert_eq!(
        seen,
        json!({"wall_ns": 946_684_800u64 * 1_000_000_000, "monotonic_moved_ns": 0}),
        "the guest read a real clock"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_sleeps_fails_its_delivery_at_the_time_limit_and_the_relay_goes_on() {
    let good = Receiver::start().await;
    let sink = Receiver::start().await;
    let plugins = tempfile::tempdir().unwrap();
    install(plugins.path(), "hostile", &wasm("relay-test-hostile"));
    let yaml = format!(
        "plugins: {{ dir: {}, timeout_ms: 300 }}\ndelivery: {{ concurrency_per_webhook: 1 }}\nwebhooks:\n  - name: Good\n    url: {}\n    retry_count: 0\n  - name: Sleepy\n    url: {}\n    format: hostile\n    options: {{ mode: sleep }}\n    retry_count: 0\n",
        plugins.path().display(),
        good.url("/"),
        sink.url("/sleepy"),
    );
    let relay = Relay::start(&yaml).await;
    for i in 0..3 {
        let (s, b) = relay
            .post(
                "/api/v1/events",
                Some(INGEST),
                &json!({"type": "x", "id": format!("s-{i}")}),
            )
            .await;
        assert_eq!(s, 202, "{b}");
    }
    // One send slot: the three sleeps run one after the other, each stopped.
    let h = relay
        .wait_history("sleepy", Duration::from_secs(20), |h| h.len() == 3)
        .await;
    for a in &h {
        assert_eq!(a["status"], "failed", "{a}");
        let msg = a["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("hostile") && msg.contains("300 ms time limit"),
            "{msg}"
        );
        let ms = a["duration_ms"].as_u64().unwrap();
        assert!(
            (290..2000).contains(&ms),
            "a sleep was stopped after {ms} ms"
        );
    }
    assert!(sink.received().is_empty());
    assert_eq!(good.wait_for(3, Duration::from_secs(10)).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_whose_plugin_sleeps_in_create_is_refused_in_bounded_time() {
    let plugins = tempfile::tempdir().unwrap();
    install(plugins.path(), "hostile", &wasm("relay-test-hostile"));
    let relay = Relay::start(&format!(
        "plugins: {{ dir: {}, timeout_ms: 300 }}\n",
        plugins.path().display()
    ))
    .await;
    let started = Instant::now();
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(20),
        relay.post(
            "/api/v1/webhooks",
            Some(ADMIN),
            &json!({"name": "Sleepy", "url": "https://example.com/hook", "format": "hostile",
                    "options": {"mode": "sleep_create"}}),
        ),
    )
    .await
    .expect("creating the webhook hung");
    let took = started.elapsed();
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("300 ms time limit"), "{body}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_just_over_8_mib_is_refused_by_the_output_limit_not_the_memory_cap() {
    let sink = Receiver::start().await;
    let plugins = tempfile::tempdir().unwrap();
    install(plugins.path(), "hostile", &wasm("relay-test-hostile"));
    let yaml = format!(
        "plugins: {{ dir: {}, memory_mb: 64, timeout_ms: 5000 }}\nwebhooks:\n  - name: Big\n    url: {}\n    format: hostile\n    options: {{ mode: big }}\n    retry_count: 0\n",
        plugins.path().display(),
        sink.url("/big"),
    );
    let relay = Relay::start(&yaml).await;
    let (s, b) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "x", "id": "big-1"}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let h = relay
        .wait_history("big", Duration::from_secs(20), |h| h.len() == 1)
        .await;
    assert_eq!(h[0]["status"], "failed", "{}", h[0]);
    let msg = h[0]["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("a body of 8388609 bytes is over the 8388608-byte limit"),
        "{msg}"
    );
    assert!(sink.received().is_empty());
}

/// A relay with one webhook per `(name, url, destination options, extra
/// yaml)`, all through the `hostile_dest` destination.
async fn relay_with_destinations(
    webhooks: &[(&str, String, Value, &str)],
) -> (Relay, tempfile::TempDir) {
    let plugins = tempfile::tempdir().unwrap();
    install(
        plugins.path(),
        "hostile_dest",
        &wasm("relay-test-hostile-dest"),
    );
    let mut yaml = format!(
        "plugins: {{ dir: {} }}\nwebhooks:\n",
        plugins.path().display()
    );
    for (name, url, options, extra) in webhooks {
        yaml += &format!(
            "  - name: {name}\n    url: {url}\n    destination: hostile_dest\n    destination_options: {options}\n    retry_count: 0\n{extra}"
        );
    }
    (Relay::start(&yaml).await, plugins)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_may_build_at_most_16_requests_per_delivery() {
    let rx = Receiver::start().await;
    let (relay, _plugins) = relay_with_destinations(&[
        (
            "Sixteen",
            rx.url("/16"),
            json!({"mode": "many", "count": 16}),
            "",
        ),
        (
            "Seventeen",
            rx.url("/17"),
            json!({"mode": "many", "count": 17}),
            "",
        ),
    ])
    .await;
    let (s, b) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "x", "id": "many-1"}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let h = relay
        .wait_history("seventeen", Duration::from_secs(20), |h| h.len() == 1)
        .await;
    assert_eq!(h[0]["status"], "failed", "{}", h[0]);
    let msg = h[0]["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("hostile_dest")
            && msg.contains("built 17 requests")
            && msg.contains("limit is 16"),
        "{msg}"
    );
    let h = relay
        .wait_history("sixteen", Duration::from_secs(20), |h| h.len() == 1)
        .await;
    assert_eq!(h[0]["status"], "succeeded", "{}", h[0]);
    let got = rx.wait_for(16, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_all = rx.received();
    assert_eq!(got.len(), 16);
    assert_eq!(got_all.len(), 16, "the 17-request delivery sent something");
    assert!(got_all.iter().all(|r| r.path == "/16"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_sends_only_to_its_webhook_host_unless_the_webhook_lists_more() {
    let rx = Receiver::start().await;
    // The same receiver under another host name: `localhost` is not
    // `127.0.0.1`.
    let elsewhere = format!("http://localhost:{}/elsewhere", rx.addr.port());
    let (relay, _plugins) = relay_with_destinations(&[
        (
            "Own",
            rx.url("/own"),
            json!({"mode": "elsewhere", "url": rx.url("/own")}),
            "",
        ),
        (
            "Other",
            rx.url("/other"),
            json!({"mode": "elsewhere", "url": elsewhere}),
            "",
        ),
        (
            "Listed",
            rx.url("/listed"),
            json!({"mode": "elsewhere", "url": elsewhere}),
            "    destination_hosts: [LocalHost]\n",
        ),
        (
            "NotHttp",
            rx.url("/nothttp"),
            json!({"mode": "elsewhere", "url": format!("ftp://127.0.0.1:{}/x", rx.addr.port())}),
            "",
        ),
    ])
    .await;
    let (s, b) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "x", "id": "host-1"}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    for (webhook, status, needle) in [
        ("own", "succeeded", None),
        ("listed", "succeeded", None),
        (
            "other",
            "failed",
            Some(
                "built a request to host \"localhost\", which is neither the webhook URL's host nor listed in its destination_hosts",
            ),
        ),
        ("nothttp", "failed", Some("not an absolute http(s) URL")),
    ] {
        let h = relay
            .wait_history(webhook, Duration::from_secs(20), |h| h.len() == 1)
            .await;
        assert_eq!(h[0]["status"], status, "{webhook}: {}", h[0]);
        if let Some(needle) = needle {
            let msg = h[0]["error"]["message"].as_str().unwrap();
            assert!(msg.contains(needle), "{webhook}: {msg}");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut paths: Vec<String> = rx.received().into_iter().map(|r| r.path).collect();
    paths.sort();
    assert_eq!(paths, ["/elsewhere", "/own"]);

    // The field is checked and accepted through the API too.
    let (s, b) = relay
        .post(
            "/api/v1/webhooks",
            Some(ADMIN),
            &json!({"name": "Bad hosts", "url": "https://example.com/", "destination_hosts": ["https://api.example.com/x"]}),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    assert!(b.to_string().contains("destination_hosts"), "{b}");
    let (s, b) = relay
        .post(
            "/api/v1/webhooks",
            Some(ADMIN),
            &json!({"name": "Good hosts", "url": "https://example.com/", "destination_hosts": ["api.example.com"]}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["destination_hosts"], json!(["api.example.com"]), "{b}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_missing_for_a_while_is_retried_until_it_is_back() {
    let rx = Receiver::start().await;
    let plugins = tempfile::tempdir().unwrap();
    install(plugins.path(), "hostile", &wasm("relay-test-hostile"));
    let yaml = format!(
        "plugins: {{ dir: {} }}\ndelivery: {{ retry_base_ms: 200, retry_max_ms: 1000 }}\nwebhooks:\n  - name: Swapped\n    url: {}\n    format: hostile\n    options: {{ mode: ok }}\n    retry_count: 10\n",
        plugins.path().display(),
        rx.url("/swapped"),
    );
    let relay = Relay::start(&yaml).await;
    // The plugin is taken away (mid-replacement, say)...
    std::fs::remove_file(plugins.path().join("hostile.wasm")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = relay.get("/api/v1/plugins", Some(ADMIN)).await.unwrap();
        if !body.to_string().contains("\"hostile\"") {
            break;
        }
        assert!(Instant::now() < deadline, "hostile never unloaded: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, b) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "x", "id": "swap-1"}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    // ...so attempts fail, but as retries, not for good.
    let h = relay
        .wait_history("swapped", Duration::from_secs(20), |h| h.len() >= 2)
        .await;
    for a in &h {
        assert_eq!(a["status"], "retrying", "{a}");
        let msg = a["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("no formatter plugin named \"hostile\""),
            "{msg}"
        );
    }
    // ...and once it is back, the delivery goes through.
    install(plugins.path(), "hostile", &wasm("relay-test-hostile"));
    let got = rx.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].json()["id"], "swap-1");
    let h = relay
        .wait_history("swapped", Duration::from_secs(10), |h| {
            h.iter().any(|a| a["status"] == "succeeded")
        })
        .await;
    let succeeded = h.iter().filter(|a| a["status"] == "succeeded").count();
    let failed = h.iter().filter(|a| a["status"] == "failed").count();
    assert_eq!((succeeded, failed), (1, 0), "{h:#?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 1);
}

/// `component` with one more core instance appended: a module whose only
/// content is a linear memory of `pages` 64 KiB pages. Its exports are
/// unchanged, so it is still a working plugin, now with two memories.
fn with_extra_memory(component: &[u8], pages: u32) -> Vec<u8> {
    fn leb(mut n: u32, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn read_leb(bytes: &[u8], at: &mut usize) -> u32 {
        let (mut n, mut shift) = (0u32, 0);
        loop {
            let b = bytes[*at];
            *at += 1;
            n |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return n;
            }
            shift += 7;
        }
    }
    // Core modules defined at the top level (section id 1) so far: the new
    // one gets the next index.
    let mut modules = 0;
    let mut at = 8;
    while at < component.len() {
        let id = component[at];
        at += 1;
        let size = read_leb(component, &mut at) as usize;
        modules += u32::from(id == 1);
        at += size;
    }
    let module = wat::parse_str(format!("(module (memory {pages}))")).expect("valid WAT");
    let mut out = component.to_vec();
    out.push(1);
    leb(module.len() as u32, &mut out);
    out.extend_from_slice(&module);
    // One core instance: instantiate that module with no arguments.
    let mut instance = vec![1, 0];
    leb(modules, &mut instance);
    instance.push(0);
    out.push(2);
    leb(instance.len() as u32, &mut out);
    out.extend_from_slice(&instance);
    out
}

#[test]
fn a_plugin_with_two_memories_gets_one_memory_cap_for_both() {
    let dir = tempfile::tempdir().unwrap();
    let event = event_file(dir.path());
    let hostile = std::fs::read(wasm("relay-test-hostile")).unwrap();
    // `relay render` caps plugins at 64 MiB (1024 pages). A second memory
    // of one page fits beside the plugin's own; one of 1023 pages fits the
    // cap alone, but not together with the plugin's own memory.
    let small = dir.path().join("small.wasm");
    std::fs::write(&small, with_extra_memory(&hostile, 1)).unwrap();
    let big = dir.path().join("big.wasm");
    std::fs::write(&big, with_extra_memory(&hostile, 1023)).unwrap();
    let render = |plugin: &Path| {
        relay_within(
            &[
                "render",
                "--plugin",
                plugin.to_str().unwrap(),
                "--event",
                event.to_str().unwrap(),
                "--set",
                "mode=ok",
            ],
            Duration::from_secs(60),
        )
        .0
    };
    let out = render(&small);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let body: Value = serde_json::from_slice(&out.stdout).expect("the output is JSON");
    assert_eq!(body["id"], "ev-1");
    let out = render(&big);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("64 MiB memory limit"), "{err}");
    assert!(out.stdout.is_empty());
}
