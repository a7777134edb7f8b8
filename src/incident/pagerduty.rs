//! Inbound acknowledgements from PagerDuty (DESIGN §19): its v3 webhook
//! `incident.acknowledged`, posted to `POST /api/v1/incidents/pagerduty`.
//!
//! PagerDuty signs the raw body: `X-PagerDuty-Signature: v1=<hex
//! HMAC-SHA256 of the body under the subscription's secret>`, several
//! comma-separated while a secret rotates. The incident is found by the
//! PagerDuty incident's `incident_key`: the `dedup_key` the `pagerduty`
//! output sent, which is the relay incident's key unless that output's
//! `dedup_key` option renders another.
//!
//! Owns: checking the signature and reading the webhook. Pure: no I/O.

use serde_json::Value;

/// The event type that acknowledges.
pub const ACKNOWLEDGED: &str = "incident.acknowledged";

/// Whether `header` (the `X-PagerDuty-Signature` value) holds a `v1=`
/// signature of `body` under one of `secrets` (constant-time compares).
pub fn signed(secrets: &[&[u8]], header: &str, body: &[u8]) -> bool {
    header
        .split(',')
        .filter_map(|s| s.trim().strip_prefix("v1="))
        .filter_map(|hex_sig| hex::decode(hex_sig).ok())
        .any(|sig| {
            secrets
                .iter()
                .any(|k| crate::sign::hmac_sha256_ok(k, &[body], &sig))
        })
}

/// What a (signed) webhook asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// `incident.acknowledged` of the PagerDuty incident with this
    /// `incident_key`, by `agent` (the acknowledging user's name, if given).
    Acknowledged {
        incident_key: String,
        agent: Option<String>,
    },
    /// Any other event type (or an acknowledgement without incident key):
    /// nothing to do.
    Ignored(String),
}

/// Reads a v3 webhook body; `Err` names what is wrong with it.
pub fn read(body: &[u8]) -> Result<Inbound, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON ({e})"))?;
    let event = v
        .get("event")
        .ok_or("the body has no \"event\" (not a PagerDuty v3 webhook)")?;
    let event_type = event
        .get("event_type")
        .and_then(Value::as_str)
        .ok_or("event.event_type is missing")?;
    if event_type != ACKNOWLEDGED {
        return Ok(Inbound::Ignored(format!("event type {event_type}")));
    }
    let Some(key) = event
        .pointer("/data/incident_key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
    else {
        return Ok(Inbound::Ignored(
            "the incident has no incident_key (not created through the Events API)".into(),
        ));
    };
    let agent = event
        .pointer("/agent/summary")
        .and_then(Value::as_str)
        .map(|a| a.chars().take(200).collect());
    Ok(Inbound::Acknowledged {
        incident_key: key.to_owned(),
        agent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(key: &[u8], body: &[u8]) -> String {
        format!("v1={}", hex::encode(crate::sign::hmac_sha256(key, &[body])))
    }

    #[test]
    fn a_signature_under_any_listed_secret_in_any_position_is_accepted() {
        let body = br#"{"event":{}}"#;
        let header = format!("v1=00ff, {}", sig(b"new", body));
        assert!(signed(&[b"old", b"new"], &header, body));
        assert!(!signed(&[b"old"], &header, body));
        assert!(!signed(&[b"new"], &header, b"{\"event\":{ }}"));
        assert!(!signed(&[b"new"], "", body));
        assert!(!signed(
            &[b"new"],
            &sig(b"new", body).replace("v1=", "v0="),
            body
        ));
    }

    #[test]
    fn an_acknowledgement_names_the_incident_key_and_agent() {
        let body = br#"{"event":{"event_type":"incident.acknowledged","agent":{"summary":"Alice"},"data":{"id":"Q1","incident_key":"INC-7"}}}"#;
        assert_eq!(
            read(body),
            Ok(Inbound::Acknowledged {
                incident_key: "INC-7".into(),
                agent: Some("Alice".into())
            })
        );
    }

    #[test]
    fn other_event_types_and_keyless_incidents_are_ignored_and_junk_refused() {
        let other = br#"{"event":{"event_type":"incident.resolved","data":{"incident_key":"K"}}}"#;
        assert_eq!(
            read(other),
            Ok(Inbound::Ignored("event type incident.resolved".into()))
        );
        let keyless = br#"{"event":{"event_type":"incident.acknowledged","data":{"id":"Q"}}}"#;
        assert!(matches!(read(keyless), Ok(Inbound::Ignored(_))));
        assert!(read(b"nope").is_err());
        assert!(read(b"{}").unwrap_err().contains("event"));
    }
}
