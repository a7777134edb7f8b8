//! OAuth2 client credentials (RFC 6749 §4.4) for any HTTP webhook
//! (`auth: {oauth2: {token_url, client_id, client_secret, scope}}`).
//!
//! Owns: fetching access tokens, the per-webhook token cache, and the one
//! refresh after a 401. The token request is an ordinary [`OutRequest`] sent
//! through the same [`super::Deliverer::send_http`] as deliveries, so the
//! SSRF guard, `network.allow_http` and `network.ca_file` apply to the token
//! endpoint too.
//!
//! **Architecture Invariant:** a token, the client secret and the token
//! endpoint's response body never reach a log line, an error message, the
//! delivery history or a viewer: errors name the token endpoint by
//! `scheme://host` and quote at most the RFC 6749 `error` code.
//!
//! A token is cached per webhook id until [`refresh_margin`] before its
//! `expires_in`; concurrent deliveries of one webhook wait on one fetch (a
//! tokio mutex per webhook). A 401 from the receiver drops the token that
//! was refused (only that one: a token another delivery already renewed is
//! kept), fetches a new one and sends the request once more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;

use super::error::DeliveryError;
use super::http::{InResponse, OutRequest};
use crate::config::{ClientAuth, OAuth2Config};

/// Tokens without `expires_in` are used for this long.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Largest token response read (a token is a few KiB at most).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// How long before its expiry a token is no longer used: a tenth of its
/// lifetime, at most 60 s, so that a request never carries a token that
/// expires on its way.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(60))
}

#[derive(Clone)]
struct Token {
    /// The access token itself; never printed.
    value: Arc<str>,
    use_until: Instant,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// One webhook's cached token and the configuration it was fetched with (a
/// reload that changes the client or scope fetches a new one).
#[derive(Default)]
struct Entry {
    current: Option<(OAuth2Config, Token)>,
}

type Slot = Arc<tokio::sync::Mutex<Entry>>;

/// The token cache shared by every delivery of the relay.
#[derive(Clone, Default)]
pub struct Tokens {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    /// Token requests sent (for tests and metrics).
    fetches: Arc<std::sync::atomic::AtomicU64>,
}

/// The bearer token handed to one request.
#[derive(Clone)]
pub struct Bearer(Arc<str>);

impl Bearer {
    /// Adds `Authorization: Bearer …`, replacing any `Authorization` header
    /// the webhook's own headers set.
    pub fn apply(&self, req: &mut OutRequest) {
        req.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        req.headers
            .push(("Authorization".into(), format!("Bearer {}", self.0)));
    }
}

impl Tokens {
    fn slot(&self, webhook: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry(webhook.to_owned()).or_default().clone()
    }

    /// How many token requests were sent so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The cached token of `webhook`, or a new one from `send` (which sends
    /// the token request). `refused` is a token the receiver just answered
    /// 401 to: it is not used again.
    pub async fn get<F, Fut>(
        &self,
        webhook: &str,
        config: &OAuth2Config,
        refused: Option<&Bearer>,
        timeout: Duration,
        send: F,
    ) -> Result<Bearer, DeliveryError>
    where
        F: FnOnce(OutRequest) -> Fut,
        Fut: std::future::Future<Output = Result<InResponse, DeliveryError>>,
    {
        let slot = self.slot(webhook);
        let mut entry = slot.lock().await;
        if let Some((cfg, token)) = &entry.current {
            let stale = refused.is_some_and(|r| Arc::ptr_eq(&r.0, &token.value));
            if cfg == config && !stale && Instant::now() < token.use_until {
                return Ok(Bearer(token.value.clone()));
            }
        }
        entry.current = None;
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let requested = Instant::now();
        let response = send(token_request(config, timeout)).await?;
        let token = read_token(config, &response, requested)?;
        let bearer = Bearer(token.value.clone());
        entry.current = Some((config.clone(), token));
        Ok(bearer)
    }
}

/// The token request: `POST token_url`, form-encoded
/// `grant_type=client_credentials` (+ `scope`), the client authenticated in
/// the form (`client_auth: body`) or with HTTP Basic (`basic`).
pub fn token_request(config: &OAuth2Config, timeout: Duration) -> OutRequest {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = &config.scope {
        form.push(("scope", scope.0.as_str()));
    }
    let mut headers = vec![
        (
            "Content-Type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ),
        ("Accept".to_owned(), "application/json".to_owned()),
    ];
    match config.client_auth {
        ClientAuth::Body => {
            form.push(("client_id", config.client_id.0.as_str()));
            form.push(("client_secret", config.client_secret.expose()));
        }
        ClientAuth::Basic => {
            // RFC 6749 §2.3.1: each part form-encoded before base64.
            let user = form_encode(&config.client_id.0);
            let pass = form_encode(config.client_secret.expose());
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            headers.push(("Authorization".to_owned(), format!("Basic {basic}")));
        }
    }
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    OutRequest {
        method: http::Method::POST,
        url: config.token_url.as_str().to_owned(),
        headers,
        body: Some(Bytes::from(body)),
        timeout,
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
    error: Option<String>,
}

/// Reads the token endpoint's answer. A non-2xx answer is a failure that
/// names the endpoint's host, its status and its RFC 6749 `error` code;
/// 408, 429 and 5xx are retried like any receiver's, other refusals
/// (`invalid_client`, a wrong scope) are not.
fn read_token(
    config: &OAuth2Config,
    response: &InResponse,
    requested: Instant,
) -> Result<Token, DeliveryError> {
    let host = host_of(config.token_url.as_str());
    let parsed: Option<TokenResponse> = serde_json::from_slice(&response.body).ok();
    if !(200..300).contains(&response.status) {
        let code = parsed
            .and_then(|p| p.error)
            .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_graphic()))
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(DeliveryError::Rejected {
            host,
            status: response.status,
            reason: format!(
                "the OAuth2 token endpoint refused the client credentials request{code}"
            ),
            retryable: super::error::status_is_retryable(response.status),
            retry_after: response.retry_after(),
            disable: false,
            // The token endpoint's body is not the receiver's: not kept.
            body: Bytes::new(),
        });
    }
    let bad = |why: &str| DeliveryError::Rejected {
        host: host.clone(),
        status: response.status,
        reason: format!("the OAuth2 token endpoint's answer {why}"),
        retryable: false,
        retry_after: None,
        disable: false,
        body: Bytes::new(),
    };
    if response.body.len() > MAX_TOKEN_BYTES {
        return Err(bad("is too large"));
    }
    let parsed = parsed.ok_or_else(|| bad("is not a JSON token response"))?;
    let value = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("has no access_token"))?;
    if http::HeaderValue::from_str(&format!("Bearer {value}")).is_err() {
        return Err(bad("has an access_token that cannot be sent in a header"));
    }
    if let Some(t) = &parsed.token_type
        && !t.eq_ignore_ascii_case("bearer")
    {
        return Err(bad("has a token_type other than Bearer"));
    }
    // RFC 6749 says a number; some servers send a string.
    let lifetime = match &parsed.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(Duration::from_secs),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok().map(Duration::from_secs),
        _ => None,
    }
    .unwrap_or(DEFAULT_LIFETIME)
    .min(Duration::from_secs(24 * 3600));
    Ok(Token {
        value: value.into(),
        use_until: requested + lifetime - refresh_margin(lifetime),
    })
}

fn host_of(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(auth: ClientAuth) -> OAuth2Config {
        OAuth2Config {
            token_url: crate::config::WebhookUrl::parse("https://login.example/t/oauth2/token")
                .unwrap(),
            client_id: crate::config::EnvString("relay app".into()),
            client_secret: crate::config::Secret::new("s3cr&t=x"),
            scope: Some(crate::config::EnvString("api.read tickets".into())),
            client_auth: auth,
        }
    }

    fn answer(status: u16, body: &str) -> InResponse {
        InResponse {
            status,
            headers: vec![],
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn the_token_request_is_a_form_post_with_the_client_in_the_body_or_basic_auth() {
        let r = token_request(&config(ClientAuth::Body), Duration::from_secs(5));
        assert_eq!(r.method, http::Method::POST);
        let body = String::from_utf8(r.body.unwrap().to_vec()).unwrap();
        assert_eq!(
            body,
            "grant_type=client_credentials&scope=api.read+tickets&client_id=relay+app&client_secret=s3cr%26t%3Dx"
        );
        assert!(!r.headers.iter().any(|(k, _)| k == "Authorization"));

        let r = token_request(&config(ClientAuth::Basic), Duration::from_secs(5));
        let body = String::from_utf8(r.body.unwrap().to_vec()).unwrap();
        assert_eq!(body, "grant_type=client_credentials&scope=api.read+tickets");
        let (_, basic) = r
            .headers
            .iter()
            .find(|(k, _)| k == "Authorization")
            .unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(decoded, b"relay+app:s3cr%26t%3Dx");
    }

    #[test]
    fn token_endpoint_refusals_name_the_error_code_but_never_the_body_or_path() {
        let c = config(ClientAuth::Body);
        let e = read_token(
            &c,
            &answer(
                401,
                r#"{"error":"invalid_client","error_description":"secret s3cr&t=x wrong"}"#,
            ),
            Instant::now(),
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("login.example") && m.contains("invalid_client"),
            "{m}"
        );
        for s in ["s3cr", "oauth2/token", "/t/"] {
            assert!(!m.contains(s), "{m}");
        }
        assert!(!e.retryable());
        assert_eq!(e.response_body(), Some(&b""[..]));
        assert!(
            read_token(&c, &answer(503, ""), Instant::now())
                .unwrap_err()
                .retryable()
        );
        for body in [
            "not json",
            r#"{"token_type":"Bearer"}"#,
            r#"{"access_token":"a","token_type":"mac"}"#,
            "{\"access_token\":\"a\\nb\"}",
        ] {
            let e = read_token(&c, &answer(200, body), Instant::now()).unwrap_err();
            assert!(!e.retryable(), "{body}: {e}");
        }
    }

    #[test]
    fn a_token_is_used_until_a_tenth_of_its_lifetime_before_expiry_at_most_a_minute() {
        let c = config(ClientAuth::Body);
        let now = Instant::now();
        let t = read_token(
            &c,
            &answer(200, r#"{"access_token":"a","expires_in":100}"#),
            now,
        )
        .unwrap();
        assert_eq!(t.use_until - now, Duration::from_secs(90));
        let t = read_token(
            &c,
            &answer(200, r#"{"access_token":"a","expires_in":"3600"}"#),
            now,
        )
        .unwrap();
        assert_eq!(t.use_until - now, Duration::from_secs(3540));
        let t = read_token(&c, &answer(200, r#"{"access_token":"a"}"#), now).unwrap();
        assert_eq!(t.use_until - now, Duration::from_secs(270));
        assert_eq!(format!("{t:?}"), "Token([redacted])");
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_and_a_refused_token_is_replaced_once() {
        let tokens = Tokens::default();
        let c = config(ClientAuth::Body);
        let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let fetch = |n: Arc<std::sync::atomic::AtomicUsize>| {
            move |_req: OutRequest| async move {
                let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(answer(
                    200,
                    &format!(r#"{{"access_token":"tok-{i}","expires_in":3600}}"#),
                ))
            }
        };
        let mut calls = Vec::new();
        for _ in 0..20 {
            let (tokens, c, n) = (tokens.clone(), c.clone(), n.clone());
            calls.push(tokio::spawn(async move {
                tokens
                    .get("w", &c, None, Duration::from_secs(1), fetch(n))
                    .await
                    .unwrap()
            }));
        }
        let mut got = Vec::new();
        for call in calls {
            got.push(call.await.unwrap().0.to_string());
        }
        assert!(got.iter().all(|t| t == "tok-0"), "{got:?}");
        assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 1);

        let first = tokens
            .get("w", &c, None, Duration::from_secs(1), fetch(n.clone()))
            .await
            .unwrap();
        // Two deliveries see a 401 with the same token: one new fetch.
        let a = tokens
            .get(
                "w",
                &c,
                Some(&first),
                Duration::from_secs(1),
                fetch(n.clone()),
            )
            .await
            .unwrap();
        let b = tokens
            .get(
                "w",
                &c,
                Some(&first),
                Duration::from_secs(1),
                fetch(n.clone()),
            )
            .await
            .unwrap();
        assert_eq!((&*a.0, &*b.0), ("tok-1", "tok-1"));
        assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(tokens.fetches(), 2);

        // A changed configuration (a reload) fetches anew.
        let mut other = c.clone();
        other.scope = None;
        let t = tokens
            .get("w", &other, None, Duration::from_secs(1), fetch(n.clone()))
            .await
            .unwrap();
        assert_eq!(&*t.0, "tok-2");
    }
}
