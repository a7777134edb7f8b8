//! Payloads, targets, requests, responses and outcomes.

use std::borrow::Cow;

use serde::Serialize;

/// A formatted payload: a body and its MIME type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// MIME type of `body`, e.g. `application/json`.
    pub content_type: String,
    /// The bytes to send.
    pub body: Vec<u8>,
}

impl Payload {
    /// A payload with any content type.
    pub fn new(content_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Payload {
        Payload {
            content_type: content_type.into(),
            body: body.into(),
        }
    }

    /// An `application/json` payload serialised from `value`.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Payload, String> {
        // Room for a typical message up front instead of growing from 128
        // bytes (each growth is a copy).
        let mut body = Vec::with_capacity(4096);
        serde_json::to_writer(&mut body, value)
            .map(|()| Payload::new("application/json", body))
            .map_err(|e| format!("cannot serialise payload: {e}"))
    }

    /// A `text/plain` payload.
    pub fn text(text: impl Into<String>) -> Payload {
        Payload::new("text/plain", text.into().into_bytes())
    }

    /// The body as UTF-8 text, if it is valid UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

/// Where the webhook points, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// The webhook URL.
    pub url: String,
    /// The configured HTTP method (upper case).
    pub method: String,
    /// The configured headers, already rendered.
    pub headers: Vec<(String, String)>,
}

/// A request for the core to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// HTTP method, upper case.
    pub method: String,
    /// Absolute URL (the core's SSRF guard checks it).
    pub url: String,
    /// Headers to send.
    pub headers: Vec<(String, String)>,
    /// Body bytes (empty for none).
    pub body: Vec<u8>,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Request {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Request {
        Request::new("POST", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// The first header with this name (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// A response the core received for one of the plugin's requests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Response body (the core may cap its size).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as text, invalid UTF-8 replaced.
    pub fn body_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `Retry-After` given in seconds, converted to milliseconds (saturating).
    /// The HTTP-date form is not supported (plugins have no clock) and yields `None`.
    pub fn retry_after_ms(&self) -> Option<u32> {
        let seconds: u64 = self.header("retry-after")?.trim().parse().ok()?;
        Some(u32::try_from(seconds.saturating_mul(1000)).unwrap_or(u32::MAX))
    }
}

/// What the core should do after a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered.
    Success,
    /// Try again later, optionally after this many milliseconds.
    Retry(Option<u32>),
    /// Give up on this delivery, with a reason.
    Fail(String),
    /// Give up and disable the webhook, with a reason.
    Disable(String),
}

/// What the host knows about the incident an event belongs to (for a
/// [`crate::StatefulDestination`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Context {
    /// The incident key: relay.yaml's `incidents.key` rendered for the event,
    /// or the event id when there is none.
    pub incident_key: String,
    /// What the last [`Verdict`] for this webhook and key stored.
    pub state: Option<String>,
}

/// What to do with a stateful destination's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// Leave it as it is.
    Keep,
    /// Replace it (the host refuses more than 4096 bytes).
    Set(String),
    /// Forget it.
    Clear,
}

/// A stateful destination's answer to a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What the core should do.
    pub outcome: Outcome,
    /// What becomes of the stored state.
    pub state: StateChange,
}

impl Verdict {
    /// `outcome`, state unchanged.
    pub fn keep(outcome: Outcome) -> Verdict {
        Verdict {
            outcome,
            state: StateChange::Keep,
        }
    }

    /// `outcome`, and store `state`.
    pub fn set(outcome: Outcome, state: impl Into<String>) -> Verdict {
        Verdict {
            outcome,
            state: StateChange::Set(state.into()),
        }
    }

    /// `outcome`, and forget the state.
    pub fn clear(outcome: Outcome) -> Verdict {
        Verdict {
            outcome,
            state: StateChange::Clear,
        }
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_to_ms() {
        let r = |v: &str| Response {
            status: 429,
            headers: vec![("Retry-After".into(), v.into())],
            body: vec![],
        };
        assert_eq!(r("30").retry_after_ms(), Some(30_000));
        assert_eq!(r(" 0 ").retry_after_ms(), Some(0));
        assert_eq!(r("99999999999").retry_after_ms(), Some(u32::MAX));
        assert_eq!(r("Wed, 21 Oct 2015 07:28:00 GMT").retry_after_ms(), None);
        assert_eq!(Response::default().retry_after_ms(), None);
    }

    #[test]
    fn request_builder_and_headers() {
        let r = Request::post("https://x")
            .header("Content-Type", "application/json")
            .body(b"{}".to_vec());
        assert_eq!(r.method, "POST");
        assert_eq!(r.header_value("content-type"), Some("application/json"));
        assert_eq!(r.body, b"{}");
    }

    #[test]
    fn payload_constructors() {
        let p = Payload::json(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(p.content_type, "application/json");
        assert_eq!(p.body_str(), Some(r#"{"a":1}"#));
        assert_eq!(Payload::text("hi").content_type, "text/plain");
    }
}
