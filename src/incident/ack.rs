//! Acknowledgement links (DESIGN §19): the signed, single-use, expiring
//! `{{ack_url}}` every template of an incident's deliveries can use.
//!
//! A link is `{base_url}/ui/ack/{token}` with the token
//! `{incident_id}.{expires_s}.{nonce}.{signature}`: the signature is the
//! hex HMAC-SHA256 (`sign::hmac_sha256`) of `ack.v1.{incident_id}.{expires_s}.{nonce}`
//! under `incidents.ack.secret`. The signature is the link's only
//! authority; the store records a used nonce in the transaction that
//! acknowledges (`Storage::ack_incident_by_link`), so a link acknowledges
//! at most once.
//!
//! Owns: making and checking tokens. Pure: no I/O, no clock (callers pass
//! the time).

use crate::config::AckLinkConfig;

/// Why a token is refused (each names what the page tells the user).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is not an acknowledgement link (it may have been cut when copied)")]
    Malformed,
    #[error("the link's signature is not valid: it was changed or not made by this relay")]
    Forged,
    #[error("the link expired; acknowledge in the console or ask for a new notification")]
    Expired,
}

/// A checked token: what it acknowledges and its single-use nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub incident_id: String,
    pub nonce: String,
    pub expires_s: i64,
}

fn message(incident_id: &str, expires_s: i64, nonce: &str) -> String {
    format!("ack.v1.{incident_id}.{expires_s}.{nonce}")
}

/// A fresh token for `incident_id`, valid `ttl_s` after `now_s`.
pub fn token(secret: &[u8], incident_id: &str, now_s: i64, ttl_s: u64) -> String {
    let expires_s = now_s.saturating_add(i64::try_from(ttl_s).unwrap_or(i64::MAX));
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let sig = hex::encode(crate::sign::hmac_sha256(
        secret,
        &[message(incident_id, expires_s, &nonce).as_bytes()],
    ));
    format!("{incident_id}.{expires_s}.{nonce}.{sig}")
}

/// The `{{ack_url}}` of `incident_id` made at `now_s`.
pub fn url(config: &AckLinkConfig, incident_id: &str, now_s: i64) -> String {
    format!(
        "{}/ui/ack/{}",
        config.base_url.0,
        token(
            config.secret.expose().as_bytes(),
            incident_id,
            now_s,
            config.ttl_s
        )
    )
}

fn id_chars(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks `token` at `now_s`: well formed, signed with `secret`, not expired
/// (in that order: a changed expiry is a forgery, not an expired link).
pub fn verify(secret: &[u8], token: &str, now_s: i64) -> Result<Link, LinkError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [incident_id, expires, nonce, sig] = parts.as_slice() else {
        return Err(LinkError::Malformed);
    };
    let expires_s: i64 = expires.parse().map_err(|_| LinkError::Malformed)?;
    if !id_chars(incident_id) || !id_chars(nonce) {
        return Err(LinkError::Malformed);
    }
    let sig = hex::decode(sig).map_err(|_| LinkError::Forged)?;
    if !crate::sign::hmac_sha256_ok(
        secret,
        &[message(incident_id, expires_s, nonce).as_bytes()],
        &sig,
    ) {
        return Err(LinkError::Forged);
    }
    if now_s >= expires_s {
        return Err(LinkError::Expired);
    }
    Ok(Link {
        incident_id: (*incident_id).to_owned(),
        nonce: (*nonce).to_owned(),
        expires_s,
    })
}

/// Whether a webhook asks for `{{ack_url}}`: its templates, headers or
/// plugin options name it. Only such webhooks get links (a link is a
/// capability: it is not handed to a SIEM that did not ask for it).
pub fn wanted(spec: &crate::config::WebhookSpec) -> bool {
    // The spec as the API shows it (secrets redacted).
    serde_json::to_string(spec).is_ok_and(|s| s.contains("ack_url"))
}

/// The incident an escalation step's event belongs to
/// (`data.escalation.incident_id`), if it is one.
pub fn step_incident(data: &crate::event::Data) -> Option<&str> {
    data.path(["escalation", "incident_id"])?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"ack-secret";

    #[test]
    fn a_fresh_token_verifies_until_it_expires() {
        let t = token(KEY, "0190-inc", 1_000, 60);
        let link = verify(KEY, &t, 1_059).expect("valid before expiry");
        assert_eq!(link.incident_id, "0190-inc");
        assert_eq!(link.expires_s, 1_060);
        assert_eq!(link.nonce.len(), 32);
        assert_eq!(verify(KEY, &t, 1_060), Err(LinkError::Expired));
    }

    #[test]
    fn two_tokens_of_one_incident_have_different_nonces() {
        let a = verify(KEY, &token(KEY, "i", 0, 60), 1).expect("valid");
        let b = verify(KEY, &token(KEY, "i", 0, 60), 1).expect("valid");
        assert_ne!(a.nonce, b.nonce);
    }

    #[test]
    fn a_changed_part_or_another_key_is_a_forgery() {
        let t = token(KEY, "inc-1", 1_000, 60);
        assert_eq!(verify(b"other", &t, 1_001), Err(LinkError::Forged));
        let later = t.replacen(".1060.", ".9999.", 1);
        assert_ne!(later, t);
        assert_eq!(verify(KEY, &later, 1_001), Err(LinkError::Forged));
        let other = t.replacen("inc-1", "inc-2", 1);
        assert_eq!(verify(KEY, &other, 1_001), Err(LinkError::Forged));
        let mut flipped = t.clone();
        let last = flipped.pop().expect("not empty");
        flipped.push(if last == '0' { '1' } else { '0' });
        assert_eq!(verify(KEY, &flipped, 1_001), Err(LinkError::Forged));
        // An expired forgery is refused as forged: the signature comes first.
        assert_eq!(verify(KEY, &later, 99_999), Err(LinkError::Forged));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for t in [
            "",
            "a.b.c",
            "a.1.n.s.x",
            "a.x.n.00",
            "a/b.1.n.00",
            "a.1.n/.00",
        ] {
            assert_eq!(verify(KEY, t, 0), Err(LinkError::Malformed), "{t:?}");
        }
    }

    #[test]
    fn the_url_is_the_base_url_and_a_verifiable_token() {
        let c: AckLinkConfig = serde_saphyr::from_str(
            "{base_url: 'https://relay.example.com/', secret: s3cr3t, ttl_s: 30}",
        )
        .expect("valid");
        let u = url(&c, "inc-9", 100);
        let t = u
            .strip_prefix("https://relay.example.com/ui/ack/")
            .expect("base url, then /ui/ack/");
        assert_eq!(
            verify(b"s3cr3t", t, 129).map(|l| l.incident_id),
            Ok("inc-9".into())
        );
        assert!(!u.contains("s3cr3t"));
    }

    #[test]
    fn a_base_url_that_is_not_absolute_http_is_refused_naming_it() {
        for bad in ["relay.example.com", "ftp://x", "https://x/?a=b"] {
            let e = serde_saphyr::from_str::<AckLinkConfig>(&format!(
                "{{base_url: '{bad}', secret: s}}"
            ))
            .expect_err(bad)
            .to_string();
            assert!(
                e.contains("incidents.ack.base_url") && e.contains(bad),
                "{e}"
            );
        }
        let e = serde_saphyr::from_str::<AckLinkConfig>("{base_url: 'https://x'}")
            .expect_err("no secret")
            .to_string();
        assert!(e.contains("secret"), "{e}");
    }
}
