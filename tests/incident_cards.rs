//! The seed's incident alert through the real relay (issue 16): an event
//! with the seed's variables posted once reaches a Slack and a Teams webhook
//! in the incident layout, and what arrives is accepted by Slack's own SDK
//! (`slack_sdk`) and Microsoft's Adaptive Cards SDK (`adaptivecards`).
//! Needs `bash tests/validators/install.sh`; fails, never skips, without it.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Runs a validator of tests/validators on `input`; its stdout.
fn validate(program: &str, script: &str, input: &Value) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/validators");
    let mut child = Command::new(program)
        .arg(format!("{dir}/{script}"))
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} is needed for this test: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} refused the card ({}; run `bash tests/validators/install.sh` if it is missing):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seed_incident_reaches_slack_and_teams_in_the_incident_layout_and_both_validate() {
    let rx = Receiver::start().await;
    let relay = Relay::start(&format!(
        "webhooks:\n  - name: Slack\n    url: {s}\n    format: slack\n  - name: Teams\n    url: {t}\n    format: teams\n",
        s = rx.url("/slack"),
        t = rx.url("/teams"),
    ))
    .await;
    let (s, body) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "incident.opened", "data": {
                "text": "Impossible travel for j.doe", "severity": "critical", "tenant_name": "Acme",
                "user_name": "j.doe@acme.example", "incident_time_utc": "2026-11-27 22:14",
                "incident_link": "https://soc.example/i/42",
                "steps_taken": ["Session revoked", "MFA reset"], "next_steps": "Confirm with the user"}}),
        )
        .await;
    assert_eq!(s, 202, "{body}");
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    let body = |path: &str| {
        got.iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("nothing at {path}"))
            .json()
    };

    let slack = body("/slack");
    let blocks = slack["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["text"]["text"], "🔴 Impossible travel for j.doe");
    let button = blocks
        .iter()
        .find(|b| b["type"] == "actions")
        .map(|b| &b["elements"][0])
        .expect("a button");
    assert_eq!(
        (button["url"].as_str(), button["style"].as_str()),
        (Some("https://soc.example/i/42"), Some("danger"))
    );
    let sections: Vec<&str> = blocks
        .iter()
        .filter_map(|b| b["text"]["text"].as_str())
        .collect();
    assert!(
        sections.contains(&"*Steps taken*\n• Session revoked\n• MFA reset"),
        "{sections:?}"
    );
    assert!(
        sections.contains(&"*Next steps*\n• Confirm with the user"),
        "{sections:?}"
    );
    let out = validate("python3", "slack_blocks.py", &json!([slack]));
    assert!(out.contains("1 valid, 0 invalid"), "{out}");

    let teams = body("/teams");
    let card = &teams["attachments"][0]["content"];
    assert_eq!(card["body"][0]["type"], "Container");
    assert_eq!(card["body"][0]["style"], "attention");
    assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
    assert_eq!(card["actions"][0]["url"], "https://soc.example/i/42");
    let out = validate("node", "adaptive_card.js", &json!([teams]));
    assert!(out.contains("1 valid, 0 invalid"), "{out}");
}
