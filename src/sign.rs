//! Signing: HMAC-SHA256 over the exact bytes sent (DESIGN.md §8).
//!
//! Owns: the signature headers of both profiles. Pure: no I/O.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::SignatureProfile;

type HmacSha256 = Hmac<Sha256>;

/// Decodes a Standard Webhooks secret (`whsec_<base64>`) into its key.
pub fn standard_key(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or_else(|| "a standard-profile secret starts with whsec_".to_string())?;
    B64.decode(b64)
        .map_err(|_| "the part after whsec_ is not valid base64".to_string())
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any size"),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// HMAC-SHA256 of the concatenated `parts` under `key` (the signatures
/// relay makes: deliveries, ack links).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    hmac(key, parts)
}

/// Whether `tag` is the HMAC-SHA256 of `parts` under `key`, compared in
/// constant time (the signatures relay checks: ack links, inbound
/// PagerDuty webhooks).
pub fn hmac_sha256_ok(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any size"),
    };
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(tag).is_ok()
}

/// The headers that sign one request.
///
/// `msg_id` is stable across retries of one delivery; `timestamp` is the
/// Unix time of this attempt in seconds.
pub fn headers(
    profile: SignatureProfile,
    header_name: Option<&str>,
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<Vec<(String, String)>, String> {
    let ts = timestamp.to_string();
    match profile {
        SignatureProfile::Sha256 => {
            let sig = hex::encode(hmac(secret.as_bytes(), &[body]));
            Ok(vec![
                (
                    header_name.unwrap_or("X-Webhook-Signature").to_owned(),
                    format!("sha256={sig}"),
                ),
                ("X-Webhook-Id".to_owned(), msg_id.to_owned()),
                ("X-Webhook-Timestamp".to_owned(), ts),
            ])
        }
        SignatureProfile::Standard => {
            let key = standard_key(secret)?;
            let sig = B64.encode(hmac(
                &key,
                &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body],
            ));
            Ok(vec![
                ("webhook-id".to_owned(), msg_id.to_owned()),
                ("webhook-timestamp".to_owned(), ts),
                (
                    header_name.unwrap_or("webhook-signature").to_owned(),
                    format!("v1,{sig}"),
                ),
            ])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_profile_matches_a_known_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
        let h = headers(
            SignatureProfile::Sha256,
            None,
            "Jefe",
            "m1",
            5,
            b"what do ya want for nothing?",
        )
        .unwrap();
        assert_eq!(
            h[0],
            (
                "X-Webhook-Signature".to_string(),
                "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
                    .to_string()
            )
        );
        assert_eq!(h[1].1, "m1");
        assert_eq!(h[2].1, "5");
    }

    #[test]
    fn header_name_is_overridable() {
        let h = headers(
            SignatureProfile::Sha256,
            Some("plerion-signature"),
            "k",
            "m",
            1,
            b"x",
        )
        .unwrap();
        assert_eq!(h[0].0, "plerion-signature");
    }

    #[test]
    fn standard_profile_needs_a_whsec_secret() {
        assert!(headers(SignatureProfile::Standard, None, "plain", "m", 1, b"x").is_err());
        let h = headers(
            SignatureProfile::Standard,
            None,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        // Example from the Standard Webhooks specification.
        assert_eq!(h[2].1, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
