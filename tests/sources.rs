//! Sources (DESIGN §20, issue 18) through the real binary: a real
//! Prometheus Alertmanager, Falco's documented JSON, generic JSON, source
//! plugins in Rust and Python (hostile ones included), refusals, metrics,
//! and `relay plugin new` used outside this checkout.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sources");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
}

fn wasm(package: &str) -> PathBuf {
    Path::new(relay_builtins::WASM_DIR).join(format!("{}.wasm", package.replace('-', "_")))
}

/// One webhook `sink` that takes every event (so its history counts the
/// events stored), then `extra`.
fn with_sink(rx: &Receiver, extra: &str) -> String {
    format!(
        "webhooks:\n  - name: sink\n    url: {}\n    event_types: [\"*\"]\n    retry_count: 0\n{extra}",
        rx.url("/hook")
    )
}

/// Deliveries in the sink's history: one per stored event.
async fn stored(relay: &Relay) -> usize {
    let (status, body) = relay
        .get("/api/v1/webhooks/sink/deliveries?limit=1000", Some(ADMIN))
        .await
        .expect("history");
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().map_or(0, Vec::len)
}

/// Waits until the sink's history holds `n` deliveries, then checks that no
/// more come (≤ 10 s).
async fn stored_exactly(relay: &Relay, n: usize) {
    relay
        .wait_history("sink", Duration::from_secs(10), |d| d.len() >= n)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stored(relay).await, n);
}

/// A sample of `/metrics` (0 when the series is absent).
async fn metric(relay: &Relay, series: &str) -> u64 {
    let (status, body) = relay.get("/metrics", Some(ADMIN)).await.expect("metrics");
    assert_eq!(status, 200);
    let text = body.as_str().unwrap_or_default().to_owned();
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn post_body(
    relay: &Relay,
    source: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    relay
        .post_raw(
            &format!("/api/v1/sources/{source}"),
            token,
            Bytes::from(body),
        )
        .await
}

/// Events the receiver got, by event id.
fn events_by_id(rx: &Receiver) -> std::collections::BTreeMap<String, Vec<Value>> {
    let mut out: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for r in rx.received() {
        let e = r.json();
        out.entry(e["id"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(e);
    }
    out
}

// ---------------------------------------------------------------- Alertmanager

/// A Prometheus Alertmanager on loopback with its own config and storage;
/// killed on drop.
struct Alertmanager {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    async fn start(webhook_url: &str, token: &str) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            r#"global:
  resolve_timeout: 1s
route:
  receiver: relay
  group_by: [alertname]
  group_wait: 200ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: relay
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
"#
        );
        std::fs::write(dir.path().join("am.yml"), config).unwrap();
        let port = free_port();
        let bin = ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("prometheus-alertmanager is installed (bash .ci/install-test-deps)");
        let log = std::fs::File::create(dir.path().join("am.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("am.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start alertmanager");
        let am = Alertmanager {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = format!("http://127.0.0.1:{port}/-/ready");
            if let Ok((200, _)) = request("GET", &url, None, None).await {
                return am;
            }
            assert!(
                Instant::now() < deadline,
                "alertmanager did not come up: {}",
                am.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("am.log")).unwrap_or_default()
    }

    async fn post_alerts(&self, alerts: &Value) {
        let url = format!("http://127.0.0.1:{}/api/v2/alerts", self.port);
        let (status, body) = request("POST", &url, None, Some(Bytes::from(alerts.to_string())))
            .await
            .expect("alertmanager reachable");
        assert_eq!(status, 200, "{body}");
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_alertmanager_firing_then_resolved_reaches_a_webhook_once_each_with_labels() {
    let rx = Receiver::start().await;
    let relay = Relay::start(&with_sink(
        &rx,
        "sources:\n  - { name: am, kind: alertmanager }\n",
    ))
    .await;
    let am = Alertmanager::start(&relay.url("/api/v1/sources/am"), INGEST).await;
    let now = std::time::SystemTime::now();
    let starts = rfc3339(now - Duration::from_secs(30));
    let labels = json!({"alertname": "DiskFull", "instance": "db-1:9100", "severity": "critical", "team": "storage"});
    am.post_alerts(&json!([{
        "labels": labels,
        "annotations": {"summary": "Disk /var is 97% full"},
        "startsAt": starts,
        "generatorURL": "http://prometheus.invalid/graph"
    }]))
    .await;
    let firing = rx.wait_for(1, Duration::from_secs(20)).await;
    let e = firing[0].json();
    assert_eq!(e["type"], "alertmanager.alert");
    assert_eq!(e["data"]["status"], "firing", "{e}");
    assert_eq!(e["data"]["labels"], labels);
    assert_eq!(e["data"]["title"], "Disk /var is 97% full");
    assert_eq!(e["data"]["severity"], "critical");
    // Resolve it: the same alert again, ended a second ago.
    am.post_alerts(&json!([{
        "labels": labels,
        "annotations": {"summary": "Disk /var is 97% full"},
        "startsAt": starts,
        "endsAt": rfc3339(std::time::SystemTime::now() - Duration::from_secs(1)),
        "generatorURL": "http://prometheus.invalid/graph"
    }]))
    .await;
    let both = rx.wait_for(2, Duration::from_secs(20)).await;
    let resolved = both[1].json();
    assert_eq!(resolved["data"]["status"], "resolved", "{resolved}");
    assert_eq!(resolved["data"]["labels"], labels);
    assert_ne!(resolved["id"], e["id"]);
    // A few more group intervals: nothing else arrives (each once).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let by_id = events_by_id(&rx);
    assert_eq!(by_id.len(), 2, "{by_id:#?}\n{}", am.log());
    assert!(by_id.values().all(|v| v.len() == 1), "{by_id:#?}");
    stored_exactly(&relay, 2).await;
    assert_eq!(
        metric(&relay, "relay_source_events_accepted_total{source=\"am\"}").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alertmanager_notification_sent_twice_is_stored_once() {
    let rx = Receiver::start().await;
    let relay = Relay::start(&with_sink(
        &rx,
        "sources:\n  - { name: am, kind: alertmanager }\n",
    ))
    .await;
    let (status, first) =
        post_body(&relay, "am", Some(INGEST), fixture("alertmanager_v4.json")).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["accepted"].as_array().unwrap().len(), 2);
    let (status, again) =
        post_body(&relay, "am", Some(INGEST), fixture("alertmanager_v4.json")).await;
    assert_eq!(status, 202, "{again}");
    for (a, b) in first["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .zip(again["accepted"].as_array().unwrap())
    {
        assert_eq!(a["id"], b["id"]);
        assert_eq!(
            (a["duplicate"].as_bool(), b["duplicate"].as_bool()),
            (Some(false), Some(true))
        );
    }
    rx.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 2);
    stored_exactly(&relay, 2).await;
}

// ---------------------------------------------------------------- Falco

#[tokio::test(flavor = "multi_thread")]
async fn falcos_documented_examples_are_delivered_with_priority_mapped_to_severity() {
    let rx = Receiver::start().await;
    let relay = Relay::start(&with_sink(
        &rx,
        "sources:\n  - { name: falco, kind: falco }\n",
    ))
    .await;
    let files = [
        ("falco_error_write_below_binary_dir.json", "high"),
        ("falco_notice_terminal_shell.json", "low"),
        ("falco_warning_no_output_fields.json", "medium"),
        ("falco_critical_k8s_audit.json", "critical"),
        ("falco_debug.json", "info"),
    ];
    for (file, _) in files {
        let (status, body) = post_body(&relay, "falco", Some(INGEST), fixture(file)).await;
        assert_eq!(status, 202, "{file}: {body}");
    }
    let got = rx.wait_for(files.len(), Duration::from_secs(10)).await;
    for (file, severity) in files {
        let raw: Value = serde_json::from_slice(&fixture(file)).unwrap();
        let e = got
            .iter()
            .map(|r| r.json())
            .find(|e| e["data"]["rule"] == raw["rule"])
            .unwrap_or_else(|| panic!("{file} was not delivered"));
        assert_eq!(e["type"], "falco.alert");
        assert_eq!(e["data"]["severity"], severity, "{file}");
        assert_eq!(e["data"]["priority"], raw["priority"], "{file}");
        assert_eq!(e["data"]["output"], raw["output"], "{file}");
        assert_eq!(
            e["data"]["output_fields"],
            raw.get("output_fields").cloned().unwrap_or(json!({})),
            "{file}"
        );
        assert_eq!(e["time"], raw["time"], "{file}");
    }
    stored_exactly(&relay, files.len()).await;
}

// ---------------------------------------------------------------- refusals

#[tokio::test(flavor = "multi_thread")]
async fn bodies_a_source_cannot_take_are_refused_naming_the_source_and_nothing_is_stored() {
    let rx = Receiver::start().await;
    let relay = Relay::start(&with_sink(
        &rx,
        "limits: { max_events_per_body: 3, max_body_bytes: 4096 }\nsources:\n  - { name: am, kind: alertmanager }\n  - { name: falco, kind: falco }\n  - name: scanner-x\n    kind: generic\n    map: { events: /findings, type: /kind, id: /uuid, data: / }\n",
    ))
    .await;
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        ("am", b"{\"version\":\"3\",\"alerts\":[]}".to_vec(), 400, "unsupported_version", "source \"am\""),
        ("am", b"not json".to_vec(), 400, "malformed_json", "not valid JSON"),
        ("falco", b"{\"rule\":\"r\"}".to_vec(), 400, "invalid_payload", "source \"falco\""),
        ("falco", fixture("alertmanager_v4.json"), 400, "invalid_payload", "not a Falco alert"),
        (
            "scanner-x",
            serde_json::to_vec(&json!({"findings": [{"kind": "a", "detail": 1}]})).unwrap(),
            400,
            "invalid_payload",
            "no id at \"/uuid\"",
        ),
        (
            "scanner-x",
            serde_json::to_vec(&json!({"findings": (0..4).map(|i| json!({"kind": "a", "uuid": i.to_string()})).collect::<Vec<_>>()})).unwrap(),
            400,
            "too_many_events",
            "at most 3",
        ),
        ("scanner-x", vec![b' '; 5000], 413, "payload_too_large", "limits.max_body_bytes"),
    ];
    for (source, body, want_status, want_code, needle) in cases {
        let (status, answer) = post_body(&relay, source, Some(INGEST), body).await;
        assert_eq!(status, want_status, "{source}: {answer}");
        assert_eq!(answer["error"]["code"], want_code, "{source}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{needle}: {message}");
    }
    // Nothing of it was stored; a good body afterwards is.
    assert_eq!(stored(&relay).await, 0);
    assert_eq!(metric(&relay, "relay_events_accepted_total").await, 0);
    let (status, ok) = post_body(
        &relay,
        "scanner-x",
        Some(INGEST),
        serde_json::to_vec(&json!({"findings": [{"kind": "a", "uuid": "u1"}]})).unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{ok}");
    assert_eq!(ok["accepted"][0]["id"], "u1");
    rx.wait_for(1, Duration::from_secs(10)).await;
    stored_exactly(&relay, 1).await;
    for (series, want) in [
        (
            "relay_source_bodies_refused_total{source=\"am\",code=\"unsupported_version\"}",
            1,
        ),
        (
            "relay_source_bodies_refused_total{source=\"am\",code=\"malformed_json\"}",
            1,
        ),
        (
            "relay_source_bodies_refused_total{source=\"falco\",code=\"invalid_payload\"}",
            2,
        ),
        (
            "relay_source_bodies_refused_total{source=\"scanner-x\",code=\"too_many_events\"}",
            1,
        ),
        (
            "relay_source_events_accepted_total{source=\"scanner-x\"}",
            1,
        ),
        ("relay_source_events_accepted_total{source=\"am\"}", 0),
    ] {
        assert_eq!(metric(&relay, series).await, want, "{series}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_sources_are_404_and_sources_take_ingest_or_admin_tokens_only() {
    let rx = Receiver::start().await;
    let relay = Relay::start(&with_sink(
        &rx,
        "sources:\n  - { name: falco, kind: falco }\n",
    ))
    .await;
    let body = fixture("falco_debug.json");
    let (status, answer) = post_body(&relay, "nope", Some(INGEST), body.clone()).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "not_found");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"nope\"")
    );
    assert_eq!(post_body(&relay, "falco", None, body.clone()).await.0, 401);
    assert_eq!(
        post_body(&relay, "falco", Some(VIEWER), body.clone())
            .await
            .0,
        403
    );
    assert_eq!(
        post_body(&relay, "falco", Some(ADMIN), body.clone())
            .await
            .0,
        202
    );
    let (status, text) = relay.get("/metrics", Some(ADMIN)).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        !text.as_str().unwrap().contains("nope"),
        "an unknown name made a series"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_type_missing_from_the_catalogue_is_refused_at_start_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{}\nstorage: {{ sqlite: {} }}\nevent_types: {{ finding_added: x }}\nsources:\n  - {{ name: am, kind: alertmanager }}\n",
            free_port(),
            dir.path().join("r.db").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sources[0].type") && err.contains("alertmanager.alert"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_added_by_a_config_reload_is_served_at_once() {
    let rx = Receiver::start().await;
    let relay = Relay::start(&with_sink(&rx, "")).await;
    let body = fixture("falco_debug.json");
    assert_eq!(
        post_body(&relay, "falco", Some(INGEST), body.clone())
            .await
            .0,
        404
    );
    let yaml = std::fs::read_to_string(&relay.config_path).unwrap()
        + "sources:\n  - { name: falco, kind: falco }\n";
    let tmp = relay.config_path.with_extension("tmp");
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(&tmp, &relay.config_path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, answer) = post_body(&relay, "falco", Some(INGEST), body.clone()).await;
        if status == 202 {
            break;
        }
        assert_eq!(status, 404, "{answer}");
        assert!(
            Instant::now() < deadline,
            "the reload never added the source"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stored_exactly(&relay, 1).await;
}

// ---------------------------------------------------------------- plugins

fn install(dir: &Path, name: &str, from: &Path) {
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    std::fs::copy(from, &tmp).expect("copy plugin");
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).expect("rename plugin into place");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rust_source_plugin_turns_a_scanners_body_into_events_through_the_relay() {
    let rx = Receiver::start().await;
    let plugins = tempfile::tempdir().unwrap();
    install(plugins.path(), "scanner", &wasm("relay-test-source"));
    let relay = Relay::start(&with_sink(
        &rx,
        &format!(
            "plugins: {{ dir: {} }}\nsources:\n  - {{ name: nmap, kind: plugin, plugin: scanner }}\n",
            plugins.path().display()
        ),
    ))
    .await;
    let body = json!({"scanner": "nmap", "findings": [
        {"id": "1", "title": "Open port 23", "severity": "high"},
        {"id": "2", "title": "Old SSH", "severity": "medium"}]});
    let (status, answer) = post_body(
        &relay,
        "nmap",
        Some(INGEST),
        serde_json::to_vec(&body).unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let ids: Vec<&str> = answer["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["nmap:1", "nmap:2"]);
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    let mut titles: Vec<String> = got
        .iter()
        .map(|r| r.json()["data"]["title"].as_str().unwrap().to_owned())
        .collect();
    titles.sort();
    assert_eq!(titles, ["Old SSH", "Open port 23"]);
    let e = got[0].json();
    assert_eq!(e["type"], "finding_added");
    // Headers reach the plugin, the caller's token never does.
    assert_eq!(e["data"]["content_type"], "application/json");
    assert_eq!(e["data"]["saw_authorization"], false);
    // The plugin's own refusal is a 400 naming the source and the plugin.
    let (status, answer) = post_body(&relay, "nmap", Some(INGEST), b"{}".to_vec()).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "source_refused");
    let msg = answer["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("source \"nmap\"") && msg.contains("not a scan report"),
        "{msg}"
    );
    stored_exactly(&relay, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_source_plugins_are_contained_and_store_nothing() {
    let rx = Receiver::start().await;
    let plugins = tempfile::tempdir().unwrap();
    install(plugins.path(), "hostile_source", &wasm("relay-test-source"));
    let modes = ["loop", "memory", "trap", "huge", "big", "many"];
    let mut sources = String::from("sources:\n");
    for m in modes {
        sources += &format!(
            "  - {{ name: {m}, kind: plugin, plugin: hostile_source, options: {{ mode: {m} }} }}\n"
        );
    }
    sources += "  - { name: good, kind: plugin, plugin: hostile_source }\n";
    let relay = Relay::start(&with_sink(
        &rx,
        &format!(
            "plugins: {{ dir: {}, memory_mb: 64, timeout_ms: 1000 }}\n{sources}",
            plugins.path().display()
        ),
    ))
    .await;
    let expect = [
        ("loop", 500, "source_plugin_failed", "1000 ms time limit"),
        ("memory", 500, "source_plugin_failed", "64 MiB memory limit"),
        ("trap", 500, "source_plugin_failed", "trapped"),
        ("huge", 500, "source_plugin_failed", "64 MiB memory limit"),
        (
            "big",
            500,
            "source_plugin_failed",
            "over the 8388608-byte limit",
        ),
        (
            "many",
            400,
            "too_many_events",
            "holds 5000 events; at most 1000",
        ),
    ];
    for (mode, status, code, needle) in expect {
        let started = Instant::now();
        let (got, answer) = post_body(&relay, mode, Some(INGEST), b"{}".to_vec()).await;
        assert_eq!(got, status, "{mode}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{mode}: {answer}");
        let msg = answer["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(needle) && msg.contains(&format!("source \"{mode}\"")),
            "{mode}: {msg}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{mode} took {:?}",
            started.elapsed()
        );
    }
    // The relay still serves, the same plugin included.
    let (status, answer) = post_body(
        &relay,
        "good",
        Some(INGEST),
        br#"{"scanner":"s","findings":[{"id":"1","title":"t","severity":"low"}]}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    rx.wait_for(1, Duration::from_secs(10)).await;
    stored_exactly(&relay, 1).await;
    assert_eq!(
        metric(
            &relay,
            "relay_source_bodies_refused_total{source=\"loop\",code=\"source_plugin_failed\"}"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_whose_plugin_file_is_gone_answers_503_and_serves_again_when_it_is_back() {
    let rx = Receiver::start().await;
    let plugins = tempfile::tempdir().unwrap();
    install(plugins.path(), "scanner", &wasm("relay-test-source"));
    let relay = Relay::start(&with_sink(
        &rx,
        &format!(
            "plugins: {{ dir: {} }}\nsources:\n  - {{ name: nmap, kind: plugin, plugin: scanner }}\n",
            plugins.path().display()
        ),
    ))
    .await;
    let body =
        br#"{"scanner":"nmap","findings":[{"id":"1","title":"t","severity":"low"}]}"#.to_vec();
    std::fs::remove_file(plugins.path().join("scanner.wasm")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let (status, answer) = post_body(&relay, "nmap", Some(INGEST), body.clone()).await;
        if status == 503 {
            break answer;
        }
        assert_eq!(status, 202, "{answer}");
        assert!(Instant::now() < deadline, "the plugin was never unloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer["error"]["code"], "source_unavailable", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("source \"nmap\"")
    );
    install(plugins.path(), "scanner", &wasm("relay-test-source"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, answer) = post_body(&relay, "nmap", Some(INGEST), body.clone()).await;
        if status == 202 {
            break;
        }
        assert_eq!(status, 503, "{answer}");
        assert!(Instant::now() < deadline, "the plugin never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn render_source_prints_the_events_a_source_plugin_makes_of_a_body() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("scan.json");
    std::fs::write(
        &body,
        r#"{"scanner":"zap","findings":[{"id":"9","title":"XSS","severity":"high"}]}"#,
    )
    .unwrap();
    let plugin = wasm("relay-test-source");
    let out = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["render", "--source"])
        .arg(&plugin)
        .arg("--body")
        .arg(&body)
        .args([
            "--set",
            "event_type=scan_finding",
            "--header",
            "Content-Type: text/json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(events.as_array().map(Vec::len), Some(1), "{events}");
    assert_eq!(events[0]["id"], "zap:9");
    assert_eq!(events[0]["type"], "scan_finding");
    assert_eq!(events[0]["data"]["content_type"], "text/json");
    // A body it refuses: exit 1 with its reason.
    std::fs::write(&body, "{}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["render", "--source"])
        .arg(&plugin)
        .arg("--body")
        .arg(&body)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a scan report"));
}

#[test]
fn a_python_source_built_with_componentize_py_runs_like_a_rust_one() {
    let dir = tempfile::tempdir().unwrap();
    let out_wasm = dir.path().join("py_source.wasm");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/python_source/build.sh"
    );
    let build = Command::new("bash")
        .arg(script)
        .arg(&out_wasm)
        .output()
        .expect("bash");
    assert!(
        build.status.success(),
        "building the Python source failed (is componentize-py installed? run bash .ci/install-test-deps):\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let body = dir.path().join("body.ndjson");
    std::fs::write(
        &body,
        "{\"id\": \"w-1\", \"rule\": \"sshd: brute force\", \"level\": 10}\n\n{\"id\": \"w-2\", \"rule\": \"new user ✓\", \"level\": 3}\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(["render", "--source"])
            .arg(&out_wasm)
            .arg("--body")
            .arg(&body)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--set", "event_type=wazuh_alert"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(events.as_array().map(Vec::len), Some(2), "{events}");
    assert_eq!(events[0]["id"], "w-1");
    assert_eq!(events[0]["type"], "wazuh_alert");
    assert_eq!(events[0]["data"]["severity"], "high");
    assert_eq!(events[1]["data"]["rule"], "new user ✓");
    assert_eq!(events[1]["data"]["severity"], "low");
    // Its options are checked by its own code.
    let out = run(&["--set", "colour=red"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field colour"));
}

// ---------------------------------------------------------------- plugin new

/// The relay binary copied out of the checkout, run from an empty
/// directory: each kind's new crate passes `cargo test` and builds for
/// wasm32-wasip2 with nothing of this checkout reachable.
#[test]
fn plugin_new_makes_crates_that_test_and_build_without_this_checkout() {
    let outside = tempfile::tempdir().unwrap();
    let bin = outside.path().join("bin/relay");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_relay"), &bin).unwrap();
    let work = outside.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let target = outside.path().join("target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let checkout = env!("CARGO_MANIFEST_DIR");
    for (name, kind, tests) in [
        ("my_formatter", "formatter", 2),
        ("my_destination", "destination", 1),
        ("my_source", "source", 2),
    ] {
        let out = Command::new(&bin)
            .args(["plugin", "new", name, "--kind", kind])
            .current_dir(&work)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let krate = work.join(name);
        let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
        assert!(!manifest.contains(checkout), "{manifest}");
        for (args, what) in [
            (vec!["test", "--quiet"], "cargo test"),
            (
                vec!["build", "--release", "--target", "wasm32-wasip2"],
                "cargo build --target wasm32-wasip2",
            ),
        ] {
            let run = Command::new(&cargo)
                .args(&args)
                .current_dir(&krate)
                .env("CARGO_TARGET_DIR", &target)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("CARGO_MANIFEST_DIR")
                .output()
                .unwrap();
            assert!(
                run.status.success(),
                "{kind}: {what} failed:\n{}{}",
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            );
            if what == "cargo test" {
                let stdout = String::from_utf8_lossy(&run.stdout);
                assert!(
                    stdout.contains(&format!("{tests} passed")),
                    "{kind}: {stdout}"
                );
            }
        }
        let wasm_file = target.join(format!("wasm32-wasip2/release/{name}.wasm"));
        assert!(wasm_file.is_file(), "{}", wasm_file.display());
        // Nothing the build read came from the checkout.
        let deps = std::fs::read_dir(target.join("wasm32-wasip2/release/deps")).unwrap();
        for d in deps.flatten() {
            if d.path().extension().is_some_and(|e| e == "d") {
                let text = std::fs::read_to_string(d.path()).unwrap_or_default();
                assert!(
                    !text.contains(checkout),
                    "{} names the checkout",
                    d.path().display()
                );
            }
        }
    }
    // The source crate is a source the relay loads.
    let body = work.join("body.json");
    std::fs::write(&body, r#"{"alerts": [{"id": "a1", "title": "Port scan"}]}"#).unwrap();
    let out = Command::new(&bin)
        .args(["render", "--source"])
        .arg(target.join("wasm32-wasip2/release/my_source.wasm"))
        .arg("--body")
        .arg(&body)
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(events[0]["id"], "a1");
    assert_eq!(events[0]["type"], "my_source_alert");
}
