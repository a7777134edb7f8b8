//! The Slack formatter's output checked by Slack's own SDK (`slack_sdk`,
//! PyPI): every block parses and validates, for ordinary and hostile events.
//! Needs `bash tests/validators/install.sh`; fails (never skips) without it.

#[path = "../../../tests/validators/harness.rs"]
mod harness;

use relay_plugin_slack::Slack;
use relay_sdk::testing;
use serde_json::{Map, Value, json};

/// A relay digest event (type `digest`) with `n` alerts whose titles and
/// group are `text`.
fn digest(n: usize, text: &str) -> Value {
    let alerts: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("a{i}"), "type": "finding", "time": "2026-01-01T00:00:00Z",
                        "data": {"title": format!("{text} {i}"), "severity": text}})
        })
        .collect();
    let data = json!({"group": {"tenant_name": text, "host": null}, "count": n, "alerts": alerts});
    let payload = testing::format::<Slack>("", &testing::event_of("digest", data)).expect("format");
    serde_json::from_slice(&payload.body).expect("json body")
}

fn message(options: &str, data: Value) -> Value {
    let payload = testing::format::<Slack>(options, &testing::event(data)).expect("format");
    serde_json::from_slice(&payload.body).expect("json body")
}

fn hostile_fields(n: usize, value: &str) -> Value {
    let mut data = Map::new();
    data.insert("title".into(), json!("T".repeat(5000)));
    for i in 0..n {
        data.insert(format!("field_{i}"), json!(value));
    }
    Value::Object(data)
}

#[test]
fn slack_sdk_accepts_ordinary_and_hostile_messages() {
    let control =
        "*bold* _it_ ~s~ `code` <!channel> <@U123> <https://evil|click> &amp; > quote\n```block```";
    let messages = vec![
        // Digests (DESIGN §17): a summary and the list, short and long, hostile text.
        digest(3, "SQL injection"),
        digest(500, &"<&>*_~[x](y) ".repeat(100)),
        digest(0, ""),
        // The seed's incident layout: header, details, steps, a button, severity emphasis.
        message(
            "",
            json!({"text": "Impossible travel for j.doe", "severity": "critical", "tenant_name": "Acme",
                   "user_name": "j.doe@acme.example", "incident_time_utc": "2026-11-27 22:14",
                   "incident_link": "https://soc.example/i/42",
                   "steps_taken": ["Session revoked", "MFA reset"], "next_steps": "Confirm with the user"}),
        ),
        message(
            r#"{"layout":"incident","button_text":"Open"}"#,
            json!({"text": "x".repeat(5000), "severity": "medium", "steps_taken": vec!["<&>*_~".repeat(200); 50],
                   "next_steps": "n\n".repeat(3000), "incident_link": format!("https://x/{}", "a".repeat(5000))}),
        ),
        message(r#"{"layout":"incident"}"#, json!({})),
        message(
            "",
            json!({"title": "SQL injection in /login", "severity": "critical",
            "tenant_name": "Acme", "description": "Found on *prod*", "url": "https://app.example/f/1"}),
        ),
        message("", json!({})),
        message("", Value::Null),
        message(
            "",
            json!({"title": "x".repeat(5000), "description": "y".repeat(5000)}),
        ),
        message(
            "",
            json!({"title": "🦀".repeat(5000), "description": "é\u{301}".repeat(4000)}),
        ),
        message("", hostile_fields(40, &"v".repeat(5000))),
        message("", hostile_fields(40, &"<&>".repeat(3000))),
        message(
            "",
            json!({"title": control, "description": control, "severity": control,
            "link": "https://example.com/?q=<&>", control: control}),
        ),
        message(
            "",
            json!({"title": "\n\r\t", "url": format!("https://x/{}", "a".repeat(5000))}),
        ),
        message(
            "",
            json!({"title": 42, "severity": 9.5, "ok": true, "tags": ["a"], "n": null}),
        ),
        message(
            r#"{"title_field":"f.name","fields":["f.a","f.b","none"],"link_field":"f.u",
                "text_field":"f.d","button_text":"B"}"#,
            json!({"f": {"name": "N", "a": 1, "b": "<b>", "u": "https://u", "d": "&"}}),
        ),
        message(
            r#"{"button_text":"x"}"#,
            json!({"url": "https://example.com", "title": "b".repeat(80)}),
        ),
    ];
    let out = harness::python(
        "slack_blocks.py",
        &serde_json::to_string(&messages).unwrap(),
    );
    assert!(
        out.contains(&format!("{} valid, 0 invalid", messages.len())),
        "{out}"
    );
}
