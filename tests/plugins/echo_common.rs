// Shared by the echo_a and echo_b fixtures: a formatter whose output names
// the build it came from, so a test can tell which version formatted an event.
use relay_sdk::{Event, Formatter, Payload};

pub struct Echo;

impl Formatter for Echo {
    fn create(_options: &str) -> Result<Self, String> {
        Ok(Echo)
    }

    fn format(&self, event: &Event) -> Result<Payload, String> {
        let body = serde_json::json!({"id": event.id, "version": VERSION});
        Ok(Payload {
            content_type: "application/json".into(),
            body: serde_json::to_vec(&body).map_err(|e| e.to_string())?,
        })
    }
}

relay_sdk::export_formatter!(Echo);
