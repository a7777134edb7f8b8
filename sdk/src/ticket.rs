//! What ticket destinations (the PSA plugins) share: whether an event
//! resolves its incident, the state they keep per incident (the ticket id
//! the create returned), and the ticket's default texts.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Event;
use crate::text::one_line;

/// The state a ticket destination keeps per incident: `{"ticket": 123}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketState {
    /// The id the PSA gave the ticket.
    pub ticket: i64,
}

impl TicketState {
    /// Reads a stored state; `None` when there is none or it is not ours.
    pub fn parse(state: Option<&str>) -> Option<TicketState> {
        serde_json::from_str(state?).ok()
    }

    /// The text to store.
    pub fn to_state(self) -> String {
        format!("{{\"ticket\":{}}}", self.ticket)
    }
}

/// Whether `event` resolves its incident: `data.status` is `resolved` or
/// `closed`, `data.event_action` is `resolve`, or `data.resolved` is true.
pub fn is_resolving(event: &Event) -> bool {
    let lower = |p: &str| event.str(p).map(|s| s.trim().to_ascii_lowercase());
    matches!(lower("status").as_deref(), Some("resolved" | "closed"))
        || lower("event_action").as_deref() == Some("resolve")
        || event.get("resolved") == Some(&Value::Bool(true))
}

/// The ticket title: `[severity] title` (title from `title`, `summary`,
/// `message`, else the event type), one line.
pub fn summary(event: &Event) -> String {
    let title = ["title", "summary", "message", "text"]
        .iter()
        .find_map(|p| event.text(p))
        .map(|t| one_line(&t))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| {
            if event.event_type.is_empty() {
                "relay event".to_string()
            } else {
                event.event_type.clone()
            }
        });
    match event.text("severity").map(|s| one_line(&s)) {
        Some(sev) if !sev.is_empty() => format!("[{sev}] {title}"),
        _ => title,
    }
}

/// The ticket text: the description, then one `key: value` line per scalar
/// field, then the event's type, id and time.
pub fn details(event: &Event) -> String {
    let mut out = String::new();
    if let Some(d) = ["description", "details"]
        .iter()
        .find_map(|p| event.text(p))
        .filter(|d| !d.trim().is_empty())
    {
        out.push_str(d.trim());
        out.push_str("\n\n");
    }
    for (k, v) in event.scalar_fields() {
        if k != "description" && k != "details" {
            out.push_str(k);
            out.push_str(": ");
            out.push_str(&one_line(&v));
            out.push('\n');
        }
    }
    if !event.id.is_empty() {
        out.push_str(&format!(
            "\nrelay event {} ({}) at {}",
            event.id, event.event_type, event.time
        ));
    }
    out.trim_end().to_string()
}

/// The number at `key` of a JSON object, or of the first object of an
/// array (some PSAs answer a list for a list posted).
pub fn id_in(body: &[u8], key: &str) -> Option<i64> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let obj = match &v {
        Value::Array(items) => items.first()?,
        other => other,
    };
    match obj.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use serde_json::json;

    #[test]
    fn resolving_events() {
        let r = |d: Value| is_resolving(&testing::event(d));
        assert!(r(json!({"status": "Resolved"})));
        assert!(r(json!({"status": "closed"})));
        assert!(r(json!({"event_action": "resolve"})));
        assert!(r(json!({"resolved": true})));
        assert!(!r(json!({"status": "open", "resolved": false})));
        assert!(!r(json!({})));
    }

    #[test]
    fn state_round_trip_and_ids() {
        let s = TicketState { ticket: 42 };
        assert_eq!(TicketState::parse(Some(&s.to_state())), Some(s));
        assert_eq!(TicketState::parse(Some("garbage")), None);
        assert_eq!(TicketState::parse(None), None);
        assert_eq!(id_in(br#"{"id": 7}"#, "id"), Some(7));
        assert_eq!(id_in(br#"[{"id": "8"}]"#, "id"), Some(8));
        assert_eq!(id_in(br#"{"itemId": 9}"#, "id"), None);
        assert_eq!(id_in(b"nope", "id"), None);
    }

    #[test]
    fn texts() {
        let e = testing::event(
            json!({"title": "T\nx", "severity": "high", "description": "D", "host": "h"}),
        );
        assert_eq!(summary(&e), "[high] T x");
        let d = details(&e);
        assert!(d.starts_with("D\n\n"), "{d}");
        assert!(d.contains("host: h\n"), "{d}");
        assert!(
            d.ends_with(&format!(
                "relay event {} ({}) at {}",
                testing::EVENT_ID,
                testing::EVENT_TYPE,
                testing::EVENT_TIME
            )),
            "{d}"
        );
    }
}
