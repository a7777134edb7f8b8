//! Slack destination: posts a payload to a Slack incoming webhook and reads
//! Slack's answer.
//!
//! `build` sends one `POST` to the webhook URL with the payload (normally from
//! the `slack` formatter) and the webhook's configured headers. A payload that
//! is not JSON is wrapped as a plain `{"text": ...}` message (with `&`, `<`,
//! `>` escaped).
//!
//! `classify`:
//!
//! | response | outcome |
//! |---|---|
//! | 2xx (Slack answers `200 ok`) | success |
//! | 429 | retry after `Retry-After` seconds |
//! | 410 (e.g. `channel_is_archived`) | disable |
//! | other 4xx (`invalid_blocks`, `no_text`, `no_service`, …) | fail, with Slack's error |
//! | 5xx | retry (after `Retry-After` when given) |
//! | anything else | fail |
//!
//! Options: none (`{}`); unknown keys are refused.

use relay_sdk::{Destination, Outcome, Payload, Request, Response, Target, parse_options};
use serde::Deserialize;

/// How much of Slack's response body a failure reason quotes.
const REASON_BODY_MAX: usize = 300;

/// Options of the Slack destination (none yet).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {}

/// The Slack incoming-webhook destination.
#[derive(Debug)]
pub struct SlackDestination;

impl Destination for SlackDestination {
    fn create(options: &str) -> Result<Self, String> {
        let Options {} = parse_options(options)?;
        Ok(SlackDestination)
    }

    fn build(&self, payload: &Payload, target: &Target) -> Result<Vec<Request>, String> {
        if target.url.is_empty() {
            return Err("the webhook has no URL".to_string());
        }
        let (content_type, body) = if is_json(&payload.content_type) {
            (payload.content_type.clone(), payload.body.clone())
        } else {
            let text = String::from_utf8_lossy(&payload.body)
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            let body = serde_json::to_vec(&serde_json::json!({ "text": text }))
                .map_err(|e| format!("cannot wrap payload: {e}"))?;
            ("application/json".to_string(), body)
        };
        let mut request = Request::post(target.url.clone()).body(body);
        for (name, value) in &target.headers {
            if !name.eq_ignore_ascii_case("content-type") {
                request = request.header(name.clone(), value.clone());
            }
        }
        Ok(vec![request.header("Content-Type", content_type)])
    }

    fn classify(&self, response: &Response) -> Outcome {
        let status = response.status;
        match status {
            200..=299 => Outcome::Success,
            429 => Outcome::Retry(response.retry_after_ms()),
            410 => Outcome::Disable(reason(response)),
            400..=499 => Outcome::Fail(reason(response)),
            500..=599 => Outcome::Retry(response.retry_after_ms()),
            _ => Outcome::Fail(reason(response)),
        }
    }
}

relay_sdk::export_destination!(SlackDestination);

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.to_ascii_lowercase().ends_with("+json")
}

/// `Slack answered 400: invalid_blocks`, quoting a bounded, single-line body.
fn reason(response: &Response) -> String {
    let body = response.body_text();
    let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.is_empty() {
        format!("Slack answered {}", response.status)
    } else {
        format!(
            "Slack answered {}: {}",
            response.status,
            relay_sdk::text::truncate(&body, REASON_BODY_MAX)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_sdk::testing::{self, response};

    fn classify(status: u16, headers: &[(&str, &str)], body: &str) -> Outcome {
        testing::classify::<SlackDestination>("", &response(status, headers, body)).unwrap()
    }

    #[test]
    fn classifies_slack_answers() {
        assert_eq!(classify(200, &[], "ok"), Outcome::Success);
        assert_eq!(classify(204, &[], ""), Outcome::Success);
        assert_eq!(
            classify(429, &[("Retry-After", "30")], ""),
            Outcome::Retry(Some(30_000))
        );
        assert_eq!(classify(429, &[], ""), Outcome::Retry(None));
        assert_eq!(classify(500, &[], "oops"), Outcome::Retry(None));
        assert_eq!(
            classify(503, &[("retry-after", "2")], ""),
            Outcome::Retry(Some(2_000))
        );
        assert_eq!(
            classify(400, &[], "invalid_blocks"),
            Outcome::Fail("Slack answered 400: invalid_blocks".into())
        );
        assert_eq!(
            classify(400, &[], "no_text\n"),
            Outcome::Fail("Slack answered 400: no_text".into())
        );
        assert_eq!(
            classify(404, &[], ""),
            Outcome::Fail("Slack answered 404".into())
        );
        assert_eq!(
            classify(410, &[], "channel_is_archived"),
            Outcome::Disable("Slack answered 410: channel_is_archived".into())
        );
        assert!(matches!(classify(302, &[], ""), Outcome::Fail(_)));
    }

    #[test]
    fn long_bodies_are_cut_in_reasons() {
        let Outcome::Fail(reason) = classify(400, &[], &"x".repeat(10_000)) else {
            panic!("expected fail");
        };
        assert!(reason.chars().count() < REASON_BODY_MAX + 30);
    }

    #[test]
    fn builds_one_post_with_the_payload() {
        let payload = Payload::new("application/json", br#"{"text":"hi"}"#.to_vec());
        let mut target = testing::target("https://hooks.slack.com/services/T/B/X");
        target.method = "PUT".into();
        target.headers = vec![
            ("X-Trace".into(), "1".into()),
            ("content-type".into(), "text/plain".into()),
        ];
        let requests = testing::build::<SlackDestination>("{}", &payload, &target).unwrap();
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        assert_eq!(r.method, "POST");
        assert_eq!(r.url, target.url);
        assert_eq!(r.body, payload.body);
        assert_eq!(r.header_value("x-trace"), Some("1"));
        assert_eq!(r.header_value("Content-Type"), Some("application/json"));
        assert_eq!(
            r.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .count(),
            1
        );
    }

    #[test]
    fn wraps_non_json_payloads_as_text() {
        let payload = Payload::text("CEF:0|a|b|c|d|e|5|msg=<&>");
        let r = &testing::build::<SlackDestination>("", &payload, &testing::target("https://h"))
            .unwrap()[0];
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"text": "CEF:0|a|b|c|d|e|5|msg=&lt;&amp;&gt;"})
        );
        assert_eq!(r.header_value("content-type"), Some("application/json"));
    }

    #[test]
    fn refuses_options_and_empty_urls() {
        let err = SlackDestination::create(r##"{"channel":"#x"}"##).unwrap_err();
        assert!(err.contains("unknown field `channel`"), "{err}");
        let err = testing::build::<SlackDestination>("", &Payload::text("x"), &testing::target(""))
            .unwrap_err();
        assert!(err.contains("no URL"));
    }
}
