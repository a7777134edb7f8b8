//! Delivery history: what an attempt's record says (status, error, clipped
//! response body) and the records of deliveries not attempted. The records
//! are stored and read through the storage interface (`crate::store`),
//! where their types live; they are re-exported here.
//!
//! Owns: the mapping from a delivery's outcome to its record (DESIGN.md §9).

use crate::deliver::DeliveryError;
use crate::event::rfc3339_ms;
use crate::store::{Start, Target};

pub use crate::store::{Attempt, AttemptError, HistoryQuery as Query, Page, Status};

/// Largest response body kept per attempt.
pub const RESPONSE_BODY_LIMIT: usize = 4096;

impl From<&DeliveryError> for AttemptError {
    fn from(e: &DeliveryError) -> Self {
        AttemptError {
            kind: e.kind().to_owned(),
            origin: e.origin().as_str().to_owned(),
            retryable: e.retryable(),
            message: e.to_string(),
        }
    }
}

impl AttemptError {
    /// Why a delivery was not attempted: its webhook is disabled (skipped)
    /// or paused by its circuit breaker (waiting).
    pub fn held(paused: bool) -> AttemptError {
        if paused {
            AttemptError {
                kind: "paused".into(),
                origin: "upstream".into(),
                retryable: true,
                message: "webhook paused by its circuit breaker after repeated receiver failures; the delivery waits and is sent once the webhook is re-enabled".into(),
            }
        } else {
            AttemptError {
                kind: "inactive".into(),
                origin: "relay".into(),
                retryable: false,
                message: "webhook is disabled by an operator; delivery skipped, resendable".into(),
            }
        }
    }
}

/// The record of a delivery not attempted because its webhook is disabled
/// (`skipped`) or paused (`paused`); `attempt` is the one that waits.
pub fn held(
    delivery_id: &str,
    webhook_id: &str,
    event: &crate::event::Event,
    attempt: u32,
    paused: bool,
) -> Attempt {
    let now = crate::event::now_ms();
    Attempt {
        id: crate::event::new_id(),
        delivery_id: delivery_id.to_owned(),
        webhook_id: webhook_id.to_owned(),
        event_id: event.id.clone(),
        event_type: event.event_type.clone(),
        attempt,
        status: if paused {
            Status::Paused
        } else {
            Status::Skipped
        },
        status_code: None,
        success: false,
        error: Some(AttemptError::held(paused)),
        response_body: None,
        duration_ms: 0,
        warnings: vec![],
        created_at: rfc3339_ms(now),
        created_at_ms: now,
    }
}

/// The records of the targets of `event` that do not start due (skipped
/// or paused), for the store to write with the event.
pub fn held_records(event: &crate::event::Event, targets: &[Target]) -> Vec<Attempt> {
    targets
        .iter()
        .filter(|t| t.start != Start::Due)
        .map(|t| {
            held(
                &t.delivery_id,
                &t.webhook_id,
                event,
                1,
                t.start == Start::Paused,
            )
        })
        .collect()
}

/// Cuts a response body to [`RESPONSE_BODY_LIMIT`] bytes on a char boundary.
pub fn clip_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(RESPONSE_BODY_LIMIT)]);
    let mut s = text.into_owned();
    while s.len() > RESPONSE_BODY_LIMIT {
        s.pop();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_body_keeps_at_most_4_kib_on_a_char_boundary() {
        let body = "é".repeat(5000);
        let s = clip_body(body.as_bytes());
        assert!(s.len() <= RESPONSE_BODY_LIMIT);
        assert!(s.len() >= RESPONSE_BODY_LIMIT - 4);
        assert!(s.chars().all(|c| c == 'é' || c == '\u{FFFD}'));
    }
}
