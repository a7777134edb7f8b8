//! The Teams formatter's output checked by Microsoft's Adaptive Cards SDK
//! (npm `adaptivecards` 3.x under Node): envelope shape, size, parse and
//! `validateProperties()`, for ordinary and hostile events.
//! Needs `bash tests/validators/install.sh`; fails (never skips) without it.

#[path = "../../../tests/validators/harness.rs"]
mod harness;

use relay_plugin_teams::{MAX_BYTES, Teams};
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
    let payload = testing::format::<Teams>("", &testing::event_of("digest", data)).expect("format");
    serde_json::from_slice(&payload.body).expect("json body")
}

fn message(options: &str, data: Value) -> Value {
    let payload = testing::format::<Teams>(options, &testing::event(data)).expect("format");
    assert!(
        payload.body.len() < MAX_BYTES,
        "{} bytes",
        payload.body.len()
    );
    serde_json::from_slice(&payload.body).expect("json body")
}

fn many_fields(n: usize, key_len: usize, value: &str) -> Value {
    let mut data = Map::new();
    data.insert("title".into(), json!("T".repeat(5000)));
    data.insert("description".into(), json!(value.repeat(10)));
    for i in 0..n {
        data.insert(format!("{i:04}{}", "k".repeat(key_len)), json!(value));
    }
    data.insert("url".into(), json!("https://example.com/finding/1"));
    Value::Object(data)
}

#[test]
fn adaptivecards_accepts_ordinary_and_hostile_cards() {
    let markdown = "**bold** _it_ [link](https://evil) <b>html</b> & \"quotes\" \\ \n- list";
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
            "tenant_name": "Acme", "description": "Found on prod", "url": "https://app.example/f/1"}),
        ),
        message("", json!({})),
        message("", Value::Null),
        message(
            "",
            json!({"title": "x".repeat(5000), "description": "y".repeat(100_000)}),
        ),
        message(
            "",
            json!({"title": "🦀".repeat(5000), "description": "\u{1}\u{7f}".repeat(5000)}),
        ),
        message("", many_fields(40, 10, &"v".repeat(5000))),
        message("", many_fields(500, 200, &"\"\\\u{2}".repeat(2000))),
        message(
            "",
            json!({"title": markdown, "description": markdown, "severity": markdown,
            markdown: markdown, "link": "https://example.com/?q=<&>"}),
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
                "text_field":"f.d","button_text":"Open"}"#,
            json!({"f": {"name": "N", "a": 1, "b": "<b>", "u": "https://u.example", "d": "&"}}),
        ),
    ];
    let out = harness::node(
        "adaptive_card.js",
        &serde_json::to_string(&messages).unwrap(),
    );
    assert!(
        out.contains(&format!("{} valid, 0 invalid", messages.len())),
        "{out}"
    );
}
