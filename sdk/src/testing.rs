//! Helpers to unit-test plugins natively with `cargo test`.
//!
//! The `format`/`build`/`classify` helpers go through the same conversions as
//! the component glue (event data crosses as JSON text), so a plugin that
//! passes here behaves the same inside the relay.
//!
//! ```
//! use relay_sdk::testing;
//! use serde_json::json;
//!
//! let e = testing::event(json!({"title": "SQL injection", "severity": "high"}));
//! assert_eq!(e.event_type, testing::EVENT_TYPE);
//! assert_eq!(e.str("severity"), Some("high"));
//! ```

use serde_json::Value;

use crate::{
    Context, Destination, Event, Formatter, Outcome, Payload, Request, Response, Source,
    SourceEvent, StatefulDestination, Target, Verdict,
};

/// Event id used by [`event`].
pub const EVENT_ID: &str = "evt_0000000000000001";
/// Event type used by [`event`].
pub const EVENT_TYPE: &str = "finding_added";
/// Event time used by [`event`].
pub const EVENT_TIME: &str = "2026-11-22T10:00:00Z";

/// An event of type [`EVENT_TYPE`] with id [`EVENT_ID`], time [`EVENT_TIME`]
/// and the given data.
pub fn event(data: Value) -> Event {
    event_of(EVENT_TYPE, data)
}

/// An event of the given type with the given data.
pub fn event_of(event_type: &str, data: Value) -> Event {
    Event::new(EVENT_ID, event_type, EVENT_TIME, data)
}

/// Runs a formatter as the relay would: `create(options)` then `format` of
/// the event after a round trip of its data through JSON text.
pub fn format<F: Formatter>(options: &str, event: &Event) -> Result<Payload, String> {
    let formatter = F::create(options)?;
    let data = serde_json::to_string(event.data()).map_err(|e| e.to_string())?;
    let event = Event::from_parts(&*event.id, &*event.event_type, &*event.time, data)?;
    formatter.format(&event)
}

/// Runs a destination's `create(options)` then `build`.
pub fn build<D: Destination>(
    options: &str,
    payload: &Payload,
    target: &Target,
) -> Result<Vec<Request>, String> {
    D::create(options)?.build(payload, target)
}

/// A target with this URL, method `POST` and no headers.
pub fn target(url: &str) -> Target {
    Target {
        url: url.to_string(),
        method: "POST".to_string(),
        headers: Vec::new(),
    }
}

/// A response with this status, headers and body.
pub fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
    Response {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

/// Runs a destination's `create(options)` then `classify`.
pub fn classify<D: Destination>(options: &str, response: &Response) -> Result<Outcome, String> {
    Ok(D::create(options)?.classify(response))
}

/// Runs a source as the relay would: `create(options)` then `parse`, and
/// each event's data through the JSON text the host receives (so data that
/// is not an object fails here as it would in the relay).
pub fn parse<S: Source>(
    options: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<SourceEvent>, String> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    let events = S::create(options)?.parse(&headers, body)?;
    for e in &events {
        e.data_text()?;
    }
    Ok(events)
}

/// A context with this incident key and stored state.
pub fn context(incident_key: &str, state: Option<&str>) -> Context {
    Context {
        incident_key: incident_key.to_string(),
        state: state.map(str::to_string),
    }
}

/// Runs a stateful destination's `create(options)` then `build`.
pub fn build_stateful<D: StatefulDestination>(
    options: &str,
    payload: &Payload,
    target: &Target,
    context: &Context,
) -> Result<Vec<Request>, String> {
    D::create(options)?.build(payload, target, context)
}

/// Runs a stateful destination's `create(options)` then `classify`.
pub fn classify_stateful<D: StatefulDestination>(
    options: &str,
    response: &Response,
    context: &Context,
) -> Result<Verdict, String> {
    Ok(D::create(options)?.classify(response, context))
}

/// The payload the core's `json` format sends for `event` (no body
/// template): `{"id", "type", "time", "data"}`.
pub fn event_payload(event: &Event) -> Payload {
    let value = serde_json::json!({
        "id": event.id,
        "type": event.event_type,
        "time": event.time,
        "data": event.data(),
    });
    Payload::new("application/json", value.to_string().into_bytes())
}
