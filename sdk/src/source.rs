//! Source plugins: the body a tool posted, turned into events.

use serde_json::{Map, Value};

/// A source plugin: turns the body a producer posted to
/// `POST /api/v1/sources/{name}` into events.
///
/// The host calls [`Source::create`] once with the source's `options:` from
/// relay.yaml and then [`Source::parse`] for every posted body.
///
/// ```
/// use relay_sdk::{Source, SourceEvent};
/// use serde_json::Value;
///
/// /// One event per line of `{"rule": ..., "id": ...}` objects.
/// struct Lines;
///
/// impl Source for Lines {
///     fn create(_options: &str) -> Result<Self, String> {
///         Ok(Lines)
///     }
///     fn parse(&self, _headers: &[(String, String)], body: &[u8]) -> Result<Vec<SourceEvent>, String> {
///         let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8")?;
///         text.lines()
///             .filter(|l| !l.trim().is_empty())
///             .map(|l| {
///                 let v: Value = serde_json::from_str(l).map_err(|e| format!("bad line: {e}"))?;
///                 let id = v["id"].as_str().map(str::to_owned);
///                 Ok(SourceEvent::new("line_alert", v).with_id(id))
///             })
///             .collect()
///     }
/// }
///
/// relay_sdk::export_source!(Lines);
/// # fn main() {
/// let events = relay_sdk::testing::parse::<Lines>("{}", &[], b"{\"id\":\"a\",\"rule\":\"r\"}\n").unwrap();
/// assert_eq!(events[0].id.as_deref(), Some("a"));
/// # }
/// ```
pub trait Source {
    /// Parses the options once. An error refuses the source (the relay
    /// does not start, or keeps its old configuration on a reload).
    fn create(options: &str) -> Result<Self, String>
    where
        Self: Sized;

    /// Turns one posted body into events. `headers` carry lower-case names
    /// (without `authorization` and `cookie`). An error refuses the body:
    /// the producer gets HTTP 400 with this message, and nothing is stored.
    ///
    /// Every event is then checked like one posted to `/api/v1/events`
    /// (type, catalogue, id, time); one bad event refuses the body.
    fn parse(&self, headers: &[(String, String)], body: &[u8]) -> Result<Vec<SourceEvent>, String>;
}

/// An event a source found in a body.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceEvent {
    /// Idempotency key. `None`: the relay gives the event a fresh id. Derive
    /// it from the body (the tool's own alert id, or a hash of what makes the
    /// alert unique) so that a body sent twice is stored once.
    pub id: Option<String>,
    /// Event type, e.g. `finding_added`.
    pub event_type: String,
    /// RFC 3339. `None`: the time the relay received the body.
    pub time: Option<String>,
    /// The event's `data`: a JSON object.
    pub data: Value,
}

impl SourceEvent {
    /// An event of this type and data, with no id and no time.
    pub fn new(event_type: impl Into<String>, data: Value) -> SourceEvent {
        SourceEvent {
            id: None,
            event_type: event_type.into(),
            time: None,
            data,
        }
    }

    /// Sets (or clears) the id.
    pub fn with_id(mut self, id: impl Into<Option<String>>) -> SourceEvent {
        self.id = id.into();
        self
    }

    /// Sets (or clears) the time (RFC 3339).
    pub fn with_time(mut self, time: impl Into<Option<String>>) -> SourceEvent {
        self.time = time.into();
        self
    }

    /// `data` as the JSON object text that crosses to the host; `null`
    /// becomes `{}`, anything else but an object is an error.
    pub fn data_text(&self) -> Result<String, String> {
        match &self.data {
            Value::Null => Ok("{}".into()),
            v @ Value::Object(_) => {
                serde_json::to_string(v).map_err(|e| format!("cannot serialise data: {e}"))
            }
            other => Err(format!(
                "event data must be a JSON object, not {}",
                kind_of(other)
            )),
        }
    }

    /// An empty data object, to fill in.
    pub fn empty_data() -> Value {
        Value::Object(Map::new())
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The first header named `name` (case-insensitive) in a source's headers.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_crosses_as_object_text_and_other_values_are_refused() {
        assert_eq!(
            SourceEvent::new("t", json!({"a": 1})).data_text().unwrap(),
            r#"{"a":1}"#
        );
        assert_eq!(
            SourceEvent::new("t", Value::Null).data_text().unwrap(),
            "{}"
        );
        let e = SourceEvent::new("t", json!([1])).data_text().unwrap_err();
        assert!(e.contains("an array"), "{e}");
    }

    #[test]
    fn headers_are_found_case_insensitively() {
        let h = vec![("content-type".to_string(), "application/json".to_string())];
        assert_eq!(header(&h, "Content-Type"), Some("application/json"));
        assert_eq!(header(&h, "x-missing"), None);
    }
}
