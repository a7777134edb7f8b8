//! Splunk HTTP Event Collector destination.
//!
//! `build` sends one `POST {url}/services/collector/event` (the webhook URL
//! without its trailing slash; a URL that already ends in
//! `/services/collector` or `/services/collector/event` is completed or kept)
//! with `Authorization: Splunk <token>` and the HEC envelope:
//!
//! ```json
//! {"time": 1795341600.25, "host": "...", "source": "...", "sourcetype": "_json",
//!  "index": "...", "event": <payload>}
//! ```
//!
//! `event` is the payload parsed as JSON when its content type is JSON, else
//! the payload text. `time` is set only when that JSON is an object with a
//! top-level RFC 3339 `time` string (epoch seconds, millisecond precision);
//! unset optional keys are omitted.
//!
//! `classify` reads HEC's `{"text": ..., "code": N}` answer:
//!
//! | response | outcome |
//! |---|---|
//! | 2xx (code 0) | success |
//! | 410 | disable |
//! | 429 | retry after `Retry-After` |
//! | code 9 (server busy), 5xx | retry (after `Retry-After` when given) |
//! | 401, 403 (codes 1–4: token missing, invalid or disabled) | fail, with HEC's reason |
//! | other 4xx, anything else | fail, with HEC's reason |
//!
//! Options: `token` (required), `index`, `source`, `sourcetype` (default
//! `_json`), `host`.

use relay_sdk::time::Timestamp;
use relay_sdk::{Destination, Outcome, Payload, Request, Response, Target, parse_options};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How much of a non-JSON answer a failure reason quotes.
const REASON_BODY_MAX: usize = 300;
/// HEC's "server is busy" code.
const CODE_SERVER_BUSY: i64 = 9;

/// Options of the Splunk HEC destination.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// HEC token (required).
    pub token: String,
    /// Target index (default: the token's default index).
    #[serde(default)]
    pub index: Option<String>,
    /// Event source.
    #[serde(default)]
    pub source: Option<String>,
    /// Event sourcetype.
    #[serde(default = "default_sourcetype")]
    pub sourcetype: Option<String>,
    /// Event host.
    #[serde(default)]
    pub host: Option<String>,
}

fn default_sourcetype() -> Option<String> {
    Some("_json".to_string())
}

/// The HEC event envelope.
#[derive(Debug, Serialize)]
struct Envelope<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sourcetype: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<&'a str>,
    event: Value,
}

/// HEC's answer body.
#[derive(Debug, Deserialize)]
struct HecAnswer {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    code: Option<i64>,
}

/// The Splunk HEC destination.
#[derive(Debug)]
pub struct SplunkHec {
    options: Options,
    authorization: String,
}

impl Destination for SplunkHec {
    fn create(options: &str) -> Result<Self, String> {
        let options: Options = parse_options(options)?;
        let token = options.token.trim();
        if token.is_empty() {
            return Err("invalid options: token: must not be empty".to_string());
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(
                "invalid options: token: must not contain spaces or control characters".into(),
            );
        }
        for (name, value) in [
            ("index", &options.index),
            ("source", &options.source),
            ("sourcetype", &options.sourcetype),
            ("host", &options.host),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(format!(
                    "invalid options: {name}: must not be empty (omit it instead)"
                ));
            }
        }
        let authorization = format!("Splunk {token}");
        Ok(SplunkHec {
            options,
            authorization,
        })
    }

    fn build(&self, payload: &Payload, target: &Target) -> Result<Vec<Request>, String> {
        let url = endpoint(&target.url)?;
        let event = event_value(payload);
        let time = event
            .get("time")
            .and_then(Value::as_str)
            .and_then(|t| Timestamp::parse_rfc3339(t).ok())
            .map(|t| t.unix_millis() as f64 / 1000.0);
        let o = &self.options;
        let envelope = Envelope {
            time,
            host: o.host.as_deref(),
            source: o.source.as_deref(),
            sourcetype: o.sourcetype.as_deref(),
            index: o.index.as_deref(),
            event,
        };
        let body =
            serde_json::to_vec(&envelope).map_err(|e| format!("cannot encode HEC event: {e}"))?;
        let mut request = Request::post(url);
        for (name, value) in &target.headers {
            if !name.eq_ignore_ascii_case("authorization")
                && !name.eq_ignore_ascii_case("content-type")
            {
                request = request.header(name.clone(), value.clone());
            }
        }
        Ok(vec![
            request
                .header("Authorization", self.authorization.clone())
                .header("Content-Type", "application/json")
                .body(body),
        ])
    }

    fn classify(&self, response: &Response) -> Outcome {
        let answer: Option<HecAnswer> = serde_json::from_slice(&response.body).ok();
        let code = answer.as_ref().and_then(|a| a.code);
        match response.status {
            200..=299 => Outcome::Success,
            410 => Outcome::Disable(reason(response, answer.as_ref())),
            429 => Outcome::Retry(response.retry_after_ms()),
            _ if code == Some(CODE_SERVER_BUSY) => Outcome::Retry(response.retry_after_ms()),
            500..=599 => Outcome::Retry(response.retry_after_ms()),
            _ => Outcome::Fail(reason(response, answer.as_ref())),
        }
    }
}

relay_sdk::export_destination!(SplunkHec);

/// `{base}/services/collector/event` from the webhook URL.
fn endpoint(url: &str) -> Result<String, String> {
    let base = url.trim().trim_end_matches('/');
    if base.is_empty() {
        return Err("the webhook has no URL".to_string());
    }
    Ok(if base.ends_with("/services/collector/event") {
        base.to_string()
    } else if base.ends_with("/services/collector") {
        format!("{base}/event")
    } else {
        format!("{base}/services/collector/event")
    })
}

/// The payload as HEC's `event`: parsed JSON for JSON payloads, else text.
fn event_value(payload: &Payload) -> Value {
    let essence = payload
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_json = essence == "application/json" || essence.ends_with("+json");
    if is_json && let Ok(value) = serde_json::from_slice(&payload.body) {
        return value;
    }
    Value::String(String::from_utf8_lossy(&payload.body).into_owned())
}

/// `Splunk HEC answered 403 (code 4): Invalid token`.
fn reason(response: &Response, answer: Option<&HecAnswer>) -> String {
    let status = response.status;
    match answer {
        Some(HecAnswer { text, code }) => {
            let code = code.map(|c| format!(" (code {c})")).unwrap_or_default();
            let text = text
                .as_deref()
                .map(|t| format!(": {t}"))
                .unwrap_or_default();
            format!(
                "Splunk HEC answered {status}{code}{}",
                relay_sdk::text::truncate(&text, REASON_BODY_MAX)
            )
        }
        None => {
            let body = response.body_text();
            let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
            if body.is_empty() {
                format!("Splunk HEC answered {status}")
            } else {
                format!(
                    "Splunk HEC answered {status}: {}",
                    relay_sdk::text::truncate(&body, REASON_BODY_MAX)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_sdk::testing::{self, response};
    use serde_json::json;

    const OPTS: &str = r#"{"token":"abc-123"}"#;

    fn build(options: &str, payload: &Payload, url: &str) -> Request {
        let mut r = testing::build::<SplunkHec>(options, payload, &testing::target(url)).unwrap();
        assert_eq!(r.len(), 1);
        r.remove(0)
    }

    fn body(r: &Request) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn builds_the_hec_request() {
        let payload = Payload::json(
            &json!({"type": "finding_added", "time": "2026-11-22T10:00:00.250Z",
            "data": {"x": 1}}),
        )
        .unwrap();
        let r = build(
            r#"{"token":"abc-123","index":"sec","source":"relay","host":"h1"}"#,
            &payload,
            "https://splunk.example:8088/",
        );
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.url,
            "https://splunk.example:8088/services/collector/event"
        );
        assert_eq!(r.header_value("authorization"), Some("Splunk abc-123"));
        assert_eq!(r.header_value("content-type"), Some("application/json"));
        assert_eq!(
            body(&r),
            json!({"time": 1795341600.25, "host": "h1", "source": "relay", "sourcetype": "_json",
                   "index": "sec", "event": {"type": "finding_added", "time": "2026-11-22T10:00:00.250Z",
                   "data": {"x": 1}}})
        );
    }

    #[test]
    fn omits_unset_keys_and_wraps_text() {
        let r = build(OPTS, &Payload::text("CEF:0|a|b|c|d|e|5|"), "https://s");
        assert_eq!(
            body(&r),
            json!({"sourcetype": "_json", "event": "CEF:0|a|b|c|d|e|5|"})
        );
        let r = build(
            r#"{"token":"t","sourcetype":null}"#,
            &Payload::json(&json!([1])).unwrap(),
            "https://s",
        );
        assert_eq!(body(&r), json!({"event": [1]}));
        let bad = Payload::new("application/json", b"{not json".to_vec());
        assert_eq!(body(&build(OPTS, &bad, "https://s"))["event"], "{not json");
        let untimed = Payload::json(&json!({"time": "later"})).unwrap();
        assert!(
            body(&build(OPTS, &untimed, "https://s"))
                .get("time")
                .is_none()
        );
    }

    #[test]
    fn endpoint_forms() {
        assert_eq!(
            endpoint("https://s:8088").unwrap(),
            "https://s:8088/services/collector/event"
        );
        assert_eq!(
            endpoint("https://s/services/collector/").unwrap(),
            "https://s/services/collector/event"
        );
        assert_eq!(
            endpoint("https://s/services/collector/event").unwrap(),
            "https://s/services/collector/event"
        );
        assert!(endpoint(" ").is_err());
    }

    #[test]
    fn target_headers_pass_but_not_auth() {
        let mut target = testing::target("https://s");
        target.headers = vec![
            ("X-Tenant".into(), "acme".into()),
            ("Authorization".into(), "evil".into()),
        ];
        let r = testing::build::<SplunkHec>(OPTS, &Payload::text("x"), &target)
            .unwrap()
            .remove(0);
        assert_eq!(r.header_value("x-tenant"), Some("acme"));
        assert_eq!(
            r.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .count(),
            1
        );
        assert_eq!(r.header_value("authorization"), Some("Splunk abc-123"));
    }

    #[test]
    fn classifies_hec_answers() {
        let c = |status, headers: &[(&str, &str)], body: &str| {
            testing::classify::<SplunkHec>(OPTS, &response(status, headers, body)).unwrap()
        };
        assert_eq!(
            c(200, &[], r#"{"text":"Success","code":0}"#),
            Outcome::Success
        );
        assert_eq!(
            c(503, &[], r#"{"text":"Server is busy","code":9}"#),
            Outcome::Retry(None)
        );
        assert_eq!(
            c(400, &[], r#"{"text":"Server is busy","code":9}"#),
            Outcome::Retry(None)
        );
        assert_eq!(
            c(502, &[("Retry-After", "5")], "bad gateway"),
            Outcome::Retry(Some(5000))
        );
        assert_eq!(
            c(429, &[("Retry-After", "1")], ""),
            Outcome::Retry(Some(1000))
        );
        assert_eq!(
            c(403, &[], r#"{"text":"Invalid token","code":4}"#),
            Outcome::Fail("Splunk HEC answered 403 (code 4): Invalid token".into())
        );
        assert_eq!(
            c(401, &[], r#"{"text":"Token is required","code":2}"#),
            Outcome::Fail("Splunk HEC answered 401 (code 2): Token is required".into())
        );
        assert_eq!(
            c(
                400,
                &[],
                r#"{"text":"Incorrect index","code":7,"invalid-event-number":0}"#
            ),
            Outcome::Fail("Splunk HEC answered 400 (code 7): Incorrect index".into())
        );
        assert_eq!(
            c(404, &[], "<html>nope</html>"),
            Outcome::Fail("Splunk HEC answered 404: <html>nope</html>".into())
        );
        assert!(matches!(c(410, &[], ""), Outcome::Disable(_)));
    }

    #[test]
    fn options_are_validated() {
        let err = |o: &str| SplunkHec::create(o).unwrap_err();
        assert!(err("{}").contains("missing field `token`"));
        assert!(err("").contains("token"));
        assert!(err(r#"{"token":" "}"#).contains("token"));
        assert!(err(r#"{"token":"a b"}"#).contains("token"));
        assert!(err(r#"{"token":"t","indx":"x"}"#).contains("unknown field `indx`"));
        assert!(err(r#"{"token":"t","index":""}"#).contains("index"));
        assert!(err(r#"{"token":5}"#).contains("token"));
    }
}
