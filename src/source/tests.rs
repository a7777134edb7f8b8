//! Built-in kinds, end to end from a body to checked events (the plugin
//! kind runs through the real binary in `tests/sources.rs`).

use serde_json::{Value, json};

use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sources");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
}

fn source(yaml: &str) -> Source {
    let spec: SourceSpec = serde_saphyr::from_str(yaml).expect("a source spec");
    spec.validate("sources[0]", None).expect("a valid spec");
    Source::new(&spec)
}

/// The events `yaml`'s source makes of `body` (cap 1000, no catalogue).
fn check(yaml: &str, body: &[u8]) -> Result<Vec<Event>, SourceError> {
    check_capped(yaml, body, 1000)
}

fn check_capped(yaml: &str, body: &[u8], max_events: usize) -> Result<Vec<Event>, SourceError> {
    let s = source(yaml);
    let bounds = Bounds {
        max_events,
        catalogue: None,
    };
    s.check(s.builtin_items(body)?, &bounds)
}

fn refused_code(r: Result<Vec<Event>, SourceError>) -> (&'static str, String) {
    let e = r.expect_err("refused");
    (e.code(), e.to_string())
}

#[test]
fn alertmanager_makes_one_event_per_alert_with_labels_and_status_in_data() {
    let events = check(
        "{name: am, kind: alertmanager}",
        &fixture("alertmanager_v4.json"),
    )
    .unwrap();
    assert_eq!(events.len(), 2);
    let (firing, resolved) = (&events[0], &events[1]);
    assert_eq!(firing.event_type, ALERTMANAGER_TYPE);
    assert_eq!(firing.time, "2026-11-28T05:00:00.123456789Z");
    assert_eq!(firing.data["status"], "firing");
    assert_eq!(
        firing.data["labels"],
        json!({"alertname": "HighLatency", "instance": "api-1:9100", "job": "api", "severity": "warning"})
    );
    assert_eq!(
        firing.data["annotations"]["description"],
        "p99 latency is 812 ms"
    );
    assert_eq!(firing.data["title"], "API latency above 500 ms");
    assert_eq!(firing.data["severity"], "medium");
    assert_eq!(firing.data["receiver"], "relay");
    // A resolved alert happened when it ended; no summary: the alert name.
    assert_eq!(resolved.time, "2026-11-28T04:30:00Z");
    assert_eq!(resolved.data["status"], "resolved");
    assert_eq!(resolved.data["title"], "DiskFull");
    assert_eq!(resolved.data["severity"], "critical");
    assert_ne!(firing.id, resolved.id);
}

#[test]
fn alertmanager_ids_depend_on_fingerprint_starts_at_and_status_only() {
    let body: Value = serde_json::from_slice(&fixture("alertmanager_v4.json")).unwrap();
    let id_of = |edit: &dyn Fn(&mut Value)| {
        let mut b = body.clone();
        edit(&mut b);
        check(
            "{name: am, kind: alertmanager}",
            &serde_json::to_vec(&b).unwrap(),
        )
        .unwrap()[0]
            .id
            .clone()
    };
    let first = id_of(&|_| {});
    assert!(first.starts_with("am-") && first.len() == 35, "{first}");
    // Re-sent (another receiver, new annotations, later endsAt): the same event.
    assert_eq!(
        id_of(&|b| {
            b["receiver"] = json!("other");
            b["alerts"][0]["annotations"]["summary"] = json!("changed");
            b["alerts"][0]["endsAt"] = json!("2026-11-28T06:00:00Z");
        }),
        first
    );
    for edit in [
        &(|b: &mut Value| b["alerts"][0]["fingerprint"] = json!("ffffffffffffffff"))
            as &dyn Fn(&mut Value),
        &|b: &mut Value| b["alerts"][0]["startsAt"] = json!("2026-11-28T05:00:01Z"),
        &|b: &mut Value| b["alerts"][0]["status"] = json!("resolved"),
    ] {
        assert_ne!(id_of(edit), first);
    }
}

#[test]
fn alertmanager_refuses_other_versions_and_shapes_naming_the_problem() {
    let (code, msg) = refused_code(check(
        "{name: am, kind: alertmanager}",
        br#"{"version":"3","alerts":[]}"#,
    ));
    assert_eq!(code, "unsupported_version");
    assert!(
        msg.starts_with("source \"am\": ") && msg.contains("\"3\""),
        "{msg}"
    );
    let (code, msg) = refused_code(check(
        "{name: am, kind: alertmanager}",
        br#"{"version":"4","alerts":[{"status":"firing","labels":{},"startsAt":"2026-11-28T05:00:00Z"}]}"#,
    ));
    assert_eq!(code, "invalid_payload");
    assert!(msg.contains("fingerprint"), "{msg}");
    let (code, msg) = refused_code(check("{name: am, kind: alertmanager}", b"not json"));
    assert_eq!(code, "malformed_json");
    assert!(msg.contains("not valid JSON"), "{msg}");
}

#[test]
fn alertmanager_severity_labels_map_onto_relays_scale() {
    for (label, want) in [
        ("critical", "critical"),
        ("page", "critical"),
        ("error", "high"),
        ("warning", "medium"),
        ("Warning", "medium"),
        ("minor", "low"),
        ("info", "info"),
        ("none", "info"),
        ("p3", "p3"),
    ] {
        assert_eq!(alertmanager::severity(label), want, "{label}");
    }
}

#[test]
fn falco_documented_examples_become_events_with_mapped_severity() {
    let cases = [
        (
            "falco_error_write_below_binary_dir.json",
            "Write below binary dir",
            "Error",
            "high",
            4,
        ),
        (
            "falco_notice_terminal_shell.json",
            "Terminal shell in container",
            "Notice",
            "low",
            11,
        ),
        (
            "falco_warning_no_output_fields.json",
            "Read sensitive file untrusted",
            "Warning",
            "medium",
            0,
        ),
        (
            "falco_critical_k8s_audit.json",
            "Attach/Exec Pod",
            "Critical",
            "critical",
            3,
        ),
        ("falco_debug.json", "Test rule", "Debug", "info", 0),
    ];
    for (file, rule, priority, severity, fields) in cases {
        let body = fixture(file);
        let raw: Value = serde_json::from_slice(&body).unwrap();
        let events = check("{name: falco, kind: falco}", &body).unwrap();
        assert_eq!(events.len(), 1, "{file}");
        let e = &events[0];
        assert_eq!(e.event_type, FALCO_TYPE);
        assert_eq!(e.time, raw["time"], "{file}");
        assert_eq!(e.data["rule"], rule, "{file}");
        assert_eq!(e.data["title"], rule, "{file}");
        assert_eq!(e.data["priority"], priority, "{file}");
        assert_eq!(e.data["severity"], severity, "{file}");
        assert_eq!(e.data["output"], raw["output"], "{file}");
        assert_eq!(
            e.data["output_fields"].as_object().map(|o| o.len()),
            Some(fields),
            "{file}"
        );
        if fields > 0 {
            assert_eq!(e.data["output_fields"], raw["output_fields"], "{file}");
        }
        assert_eq!(
            e.data["hostname"],
            raw.get("hostname").cloned().unwrap_or(json!(""))
        );
        assert_eq!(
            e.data["tags"],
            raw.get("tags").cloned().unwrap_or(json!([]))
        );
        assert!(e.id.starts_with("falco-"), "{}", e.id);
        // The same alert posted again is the same event.
        assert_eq!(
            check("{name: falco, kind: falco}", &body).unwrap()[0].id,
            e.id
        );
    }
}

#[test]
fn falco_priorities_cover_all_eight_levels_and_refuse_others() {
    for (p, want) in [
        ("Emergency", "critical"),
        ("Alert", "critical"),
        ("Critical", "critical"),
        ("Error", "high"),
        ("Warning", "medium"),
        ("Notice", "low"),
        ("Informational", "info"),
        ("Debug", "info"),
    ] {
        assert_eq!(falco::severity(p), Some(want), "{p}");
    }
    let (code, msg) = refused_code(check(
        "{name: falco, kind: falco}",
        br#"{"output":"x","priority":"Loud","rule":"r","time":"2023-06-22T00:00:00Z"}"#,
    ));
    assert_eq!(code, "invalid_payload");
    assert!(msg.contains("\"Loud\""), "{msg}");
    let (code, msg) = refused_code(check(
        "{name: falco, kind: falco}",
        br#"{"output":"x","priority":"Error","time":"2023-06-22T00:00:00Z"}"#,
    ));
    assert_eq!(code, "invalid_payload");
    assert!(msg.contains("rule"), "{msg}");
}

#[test]
fn falco_uses_its_uuid_as_the_id_when_it_sends_one() {
    let e = check(
        "{name: f, kind: falco, type: runtime_alert}",
        br#"{"uuid":"8e0a5b7c-1111-4222-8333-944455556666","output":"x","priority":"Error","rule":"r","time":"2023-06-22T00:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(e[0].id, "8e0a5b7c-1111-4222-8333-944455556666");
    assert_eq!(e[0].event_type, "runtime_alert");
}

const SCANNER: &str = "{name: scanner-x, kind: generic, map: {events: /findings, type: /kind, id: /uuid, time: /ts, data: /detail}}";

#[test]
fn generic_maps_type_id_time_and_data_by_json_pointer() {
    let body = json!({"scan": 7, "findings": [
        {"kind": "finding_added", "uuid": "f-1", "ts": "2026-11-22T10:00:00Z", "detail": {"title": "XSS"}},
        {"kind": "finding_added", "uuid": 42, "detail": {"title": "SQLi"}}
    ]});
    let events = check(SCANNER, &serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        (
            events[0].id.as_str(),
            events[0].event_type.as_str(),
            events[0].time.as_str()
        ),
        ("f-1", "finding_added", "2026-11-22T10:00:00Z")
    );
    assert_eq!(events[0].data, json!({"title": "XSS"}));
    assert_eq!(events[1].id, "42");
    // No time in the item: the time of receipt.
    assert!(events[1].time.ends_with('Z') && events[1].time != events[0].time);
}

#[test]
fn generic_without_map_id_gives_fresh_ids_and_a_fixed_type() {
    let body = br#"[{"a": 1}, {"a": 2}]"#;
    let events = check("{name: g, kind: generic, type: scan_result}", body).unwrap();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.event_type == "scan_result"));
    assert_ne!(events[0].id, events[1].id);
    assert_eq!(events[1].data, json!({"a": 2}));
    // The DESIGN §20 form: `data: /` is the whole item.
    let one = check(
        "{name: g, kind: generic, map: {type: /kind, data: /}}",
        br#"{"kind": "k", "x": 1}"#,
    )
    .unwrap();
    assert_eq!(one[0].data, json!({"kind": "k", "x": 1}));
    // map.type finds nothing: the fixed type is the fallback.
    let fallback = check(
        "{name: g, kind: generic, type: dflt, map: {type: /kind}}",
        br#"{"x": 1}"#,
    )
    .unwrap();
    assert_eq!(fallback[0].event_type, "dflt");
}

#[test]
fn generic_refuses_items_that_miss_what_the_map_asks_for() {
    for (body, needle) in [
        (
            json!({"findings": [{"kind": "a", "detail": {}}]}),
            "no id at \"/uuid\"",
        ),
        (
            json!({"findings": [{"uuid": "1", "detail": {}}]}),
            "no type at \"/kind\"",
        ),
        (
            json!({"findings": [{"kind": 3, "uuid": "1", "detail": {}}]}),
            "not a string",
        ),
        (
            json!({"findings": [{"kind": "a", "uuid": "1", "detail": [1]}]}),
            "not a JSON object",
        ),
        (
            json!({"findings": [{"kind": "a", "uuid": "1", "ts": 17, "detail": {}}]}),
            "RFC 3339",
        ),
        (
            json!({"findings": {"kind": "a"}}),
            "does not point at an array",
        ),
        (json!({"other": []}), "finds nothing"),
    ] {
        let (code, msg) = refused_code(check(SCANNER, &serde_json::to_vec(&body).unwrap()));
        assert_eq!(code, "invalid_payload", "{msg}");
        assert!(msg.contains(needle), "{needle}: {msg}");
        assert!(msg.starts_with("source \"scanner-x\": "), "{msg}");
    }
    // §5's rules apply to what the map found, and name the event.
    let (code, msg) = refused_code(check(
        SCANNER,
        br#"{"findings": [{"kind": "ok", "uuid": "1", "detail": {}}, {"kind": "bad type", "uuid": "2", "detail": {}}]}"#,
    ));
    assert_eq!(code, "invalid_type");
    assert!(msg.contains("events[1]"), "{msg}");
    let (code, _) = refused_code(check(
        SCANNER,
        br#"{"findings": [{"kind": "a", "uuid": "1", "ts": "yesterday", "detail": {}}]}"#,
    ));
    assert_eq!(code, "invalid_time");
    let (code, _) = refused_code(check(SCANNER, br#"{"findings": []}"#));
    assert_eq!(code, "no_events");
}

#[test]
fn more_events_than_the_cap_refuse_the_whole_body() {
    let items: Vec<Value> = (0..11).map(|i| json!({"n": i})).collect();
    let body = serde_json::to_vec(&items).unwrap();
    let yaml = "{name: g, kind: generic, type: t}";
    assert_eq!(check_capped(yaml, &body, 11).unwrap().len(), 11);
    let e = check_capped(yaml, &body, 10).unwrap_err();
    assert_eq!(
        e,
        SourceError::TooMany {
            name: "g".into(),
            count: 11,
            max: 10
        }
    );
    assert!(e.to_string().contains("limits.max_events_per_body"), "{e}");
}

#[test]
fn source_specs_are_checked_field_by_field() {
    let bad = |yaml: &str| -> String {
        match serde_saphyr::from_str::<SourceSpec>(yaml) {
            Err(e) => e.to_string(),
            Ok(spec) => {
                let (field, message) = spec.validate("sources[0]", None).unwrap_err();
                format!("{field}: {message}")
            }
        }
    };
    assert!(bad("{name: 'a b', kind: falco}").contains("not a valid source name"));
    assert!(bad("{name: g, kind: generic}").contains("sources[0].map.type"));
    assert!(bad("{name: g, kind: generic, type: t, map: {id: uuid}}").contains("start it with /"));
    assert!(bad("{name: f, kind: falco, map: {type: /a}}").contains("sources[0].map"));
    assert!(bad("{name: p, kind: plugin}").contains("sources[0].plugin"));
    assert!(bad("{name: p, kind: plugin, plugin: x, type: t}").contains("sources[0].type"));
    assert!(bad("{name: p, kind: plugin, plugin: x, options: [1]}").contains("sources[0].options"));
    assert!(bad("{name: f, kind: falco, colour: red}").contains("colour"));
    assert!(bad("{name: f, kind: kafka}").contains("kafka"));
    let mut cat = BTreeMap::new();
    cat.insert("known".to_string(), String::new());
    let spec: SourceSpec = serde_saphyr::from_str("{name: f, kind: falco, type: other}").unwrap();
    let (field, message) = spec.validate("sources[3]", Some(&cat)).unwrap_err();
    assert_eq!(field, "sources[3].type");
    assert!(message.contains("not declared"), "{message}");
}
