//! Delivery: the only module that opens sockets. It takes a finished request
//! (body already formatted and signed) and reports a response or a
//! [`DeliveryError`].

pub mod email;
pub mod error;
pub mod guard;
pub mod http;
pub mod local_syslog;
pub mod oauth2;
pub mod syslog;
pub mod tls;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;

pub use error::{DeliveryError, Origin};
pub use guard::Guard;
pub use http::{HttpSender, InResponse, OutRequest};
pub use syslog::{SyslogSender, is_syslog_url};
pub use tls::CaFileError;

/// What errors and viewers may show of a URL (defined beside the config's
/// URL type, which needs it too).
pub use crate::config::redact_url;

/// Network policy that can change on a config reload.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allow_http: bool,
}

/// A `network.ca_file` path and the contents it had when loaded.
type CaSource = (PathBuf, Vec<u8>);

/// Sends requests over the transport their URL names.
#[derive(Clone)]
pub struct Deliverer {
    http: Arc<ArcSwap<HttpSender>>,
    syslog: SyslogSender,
    guard: Arc<ArcSwap<Guard>>,
    policy: Arc<ArcSwap<Policy>>,
    /// The TLS client configuration of new connections (HTTPS and syslog).
    tls: Arc<ArcSwap<rustls::ClientConfig>>,
    /// The `network.ca_file` path and contents `tls` was built from.
    ca: Arc<Mutex<Option<CaSource>>>,
    /// OAuth2 access tokens, per webhook.
    tokens: oauth2::Tokens,
}

impl Deliverer {
    /// Trusts the webpki roots only; see [`Deliverer::with_ca_file`].
    pub fn new(guard: Guard, policy: Policy) -> Deliverer {
        let guard = Arc::new(ArcSwap::from_pointee(guard));
        let config = tls::webpki_config();
        let tls = Arc::new(ArcSwap::new(config.clone()));
        Deliverer {
            http: Arc::new(ArcSwap::from_pointee(HttpSender::new(
                guard.clone(),
                config,
            ))),
            syslog: SyslogSender::new(guard.clone(), tls.clone()),
            guard,
            policy: Arc::new(ArcSwap::from_pointee(policy)),
            tls,
            ca: Arc::default(),
            tokens: oauth2::Tokens::default(),
        }
    }

    /// Like [`Deliverer::new`], also trusting the CA certificates of
    /// `network.ca_file` (PEM) for every outbound TLS connection.
    pub fn with_ca_file(
        guard: Guard,
        policy: Policy,
        ca_file: Option<&Path>,
    ) -> Result<Deliverer, CaFileError> {
        let d = Deliverer::new(guard, policy);
        d.set_ca_file(ca_file)?;
        Ok(d)
    }

    /// Applies `network.ca_file` (on start and on every reload): when the
    /// path or the file's contents changed, new connections trust the new
    /// set (webpki roots + the file's certificates); connections already
    /// open stay as they are. On error nothing changes.
    pub fn set_ca_file(&self, ca_file: Option<&Path>) -> Result<(), CaFileError> {
        let wanted = match ca_file {
            None => None,
            Some(p) => Some((
                p.to_owned(),
                std::fs::read(p).map_err(|e| CaFileError {
                    path: p.to_owned(),
                    message: format!("cannot read: {e}"),
                })?,
            )),
        };
        let mut current = self.ca.lock().unwrap_or_else(PoisonError::into_inner);
        if *current == wanted {
            return Ok(());
        }
        let config = match &wanted {
            None => tls::webpki_config(),
            Some((path, pem)) => tls::config_with_pem(path, pem)?,
        };
        self.tls.store(config.clone());
        self.http
            .store(Arc::new(HttpSender::new(self.guard.clone(), config)));
        *current = wanted;
        Ok(())
    }

    /// Applies a new `network:` section. A changed guard also replaces the
    /// HTTP connection pool: a kept connection was checked against the old
    /// guard when it was opened, so none is reused after `allow_private`
    /// changed (requests in flight finish on the old pool). Syslog re-checks
    /// its kept connection's peer before each reuse instead.
    pub fn reconfigure(&self, guard: Guard, policy: Policy) {
        let changed = **self.guard.load() != guard;
        self.guard.store(Arc::new(guard));
        self.policy.store(Arc::new(policy));
        if changed {
            let _ca = self.ca.lock().unwrap_or_else(PoisonError::into_inner);
            self.http.store(Arc::new(HttpSender::new(
                self.guard.clone(),
                self.tls.load_full(),
            )));
        }
    }

    pub async fn send_http(&self, req: OutRequest) -> Result<InResponse, DeliveryError> {
        let scheme = req
            .url
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default();
        match scheme.as_str() {
            "https" => {}
            "http" if self.policy.load().allow_http => {}
            "http" => {
                return Err(DeliveryError::Config(format!(
                    "{:?} uses http:// but network.allow_http is false",
                    redact_url(&req.url)
                )));
            }
            other => {
                return Err(DeliveryError::Config(format!(
                    "scheme {other:?} cannot be sent over HTTP"
                )));
            }
        }
        self.http.load_full().send(req).await
    }

    /// Like [`Deliverer::send_http`], with `Authorization: Bearer <token>`
    /// from the webhook's OAuth2 client when it has one (`oauth2::Tokens`
    /// caches the token per webhook). A 401 answer drops that token and the
    /// request is sent once more with a new one.
    pub async fn send_http_as(
        &self,
        webhook_id: &str,
        auth: Option<&crate::config::OAuth2Config>,
        req: OutRequest,
    ) -> Result<InResponse, DeliveryError> {
        let Some(config) = auth else {
            return self.send_http(req).await;
        };
        let timeout = req.timeout;
        let fetch = |r| self.send_http(r);
        let token = self
            .tokens
            .get(webhook_id, config, None, timeout, fetch)
            .await?;
        let mut first = req.clone();
        token.apply(&mut first);
        let response = self.send_http(first).await?;
        if response.status != 401 {
            return Ok(response);
        }
        let fetch = |r| self.send_http(r);
        let token = self
            .tokens
            .get(webhook_id, config, Some(&token), timeout, fetch)
            .await?;
        let mut again = req;
        token.apply(&mut again);
        self.send_http(again).await
    }

    /// Sends one email to `smtp://` / `smtps://` `url` (see [`email::send`]):
    /// through the SSRF guard, trusting `network.ca_file` too; `login` is
    /// `email.username` with the webhook's secret.
    pub async fn send_email(
        &self,
        url: &str,
        out: &email::Outgoing,
        allow_plaintext: bool,
        login: Option<(&str, &str)>,
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        let guard = self.guard.load_full();
        let ca_pem = self
            .ca
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(_, pem)| pem.clone());
        let options = email::SendOptions {
            guard: &guard,
            ca_pem: ca_pem.as_deref(),
            allow_plaintext,
            login,
            timeout,
        };
        email::send(url, out, &options).await
    }

    /// OAuth2 token requests sent so far.
    pub fn token_fetches(&self) -> u64 {
        self.tokens.fetches()
    }

    /// Sends one syslog message (RFC 5424, unframed) to `udp://host:port`
    /// (one datagram, at most [`syslog::UDP_MAX_BYTES`]), `tcp://host:port`
    /// or `tls://host:port` (RFC 6587 octet counting, one kept connection per
    /// URL). Success: the message was written and flushed within `timeout`.
    pub async fn send_syslog(
        &self,
        url: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        self.syslog.send(url, message, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A CA (PEM) and a `localhost` server certificate + key it signed.
    fn ca_and_server() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (ca.pem(), cert.der().clone(), key)
    }

    /// An HTTPS server answering every request with 200 `ok`.
    async fn https_server(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> u16 {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        port
    }

    /// A plain HTTP/1.1 server on 127.0.0.1 answering 200 `ok` and keeping
    /// every connection open; counts the connections it accepted.
    async fn keep_alive_server() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    loop {
                        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                            match tcp.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => req.extend_from_slice(&buf[..n]),
                            }
                        }
                        req.clear();
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if tcp.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (port, accepted)
    }

    fn get(url: String) -> OutRequest {
        OutRequest {
            method: ::http::Method::GET,
            url,
            headers: vec![],
            body: None,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn a_kept_connection_is_not_reused_once_allow_private_no_longer_allows_it() {
        let (port, accepted) = keep_alive_server().await;
        let http = Policy { allow_http: true };
        let loopback = || Guard::new(vec!["127.0.0.0/8".parse().unwrap()]);
        let d = Deliverer::new(loopback(), http.clone());
        let url = format!("http://127.0.0.1:{port}/");
        for _ in 0..2 {
            assert_eq!(d.send_http(get(url.clone())).await.unwrap().status, 200);
        }
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "the second request reused the kept connection"
        );

        d.reconfigure(loopback(), http.clone());
        assert_eq!(d.send_http(get(url.clone())).await.unwrap().status, 200);
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "an unchanged guard keeps the pool"
        );

        d.reconfigure(Guard::new(vec![]), http);
        let e = d.send_http(get(url)).await.unwrap_err();
        assert!(matches!(e, DeliveryError::Blocked { .. }), "{e}");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn delivery_errors_never_show_a_url_path_or_query() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{closed}/secret-path?token=abc");
        let guard = || Guard::new(vec!["127.0.0.0/8".parse().unwrap()]);
        let cases = [
            // http:// while network.allow_http is off (an API webhook after
            // a reload, or a destination plugin's request).
            (Policy { allow_http: false }, url.clone()),
            // Nothing listens there.
            (Policy { allow_http: true }, url.clone()),
            // Not a URL hyper can send.
            (
                Policy { allow_http: true },
                format!("http://127.0.0.1:{closed}/secret-path?token=abc def"),
            ),
        ];
        for (policy, url) in cases {
            let e = Deliverer::new(guard(), policy)
                .send_http(get(url))
                .await
                .unwrap_err();
            let message = e.to_string();
            assert!(message.contains("127.0.0.1"), "{message}");
            for s in ["secret-path", "abc"] {
                assert!(!message.contains(s), "{message}");
            }
        }
        let e = SyslogSender::new(
            Arc::new(ArcSwap::from_pointee(guard())),
            Arc::new(ArcSwap::new(tls::webpki_config())),
        )
        .send(
            "tcp://127.0.0.1:1/secret-path?token=abc",
            b"x",
            Duration::from_secs(1),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(!e.contains("secret-path") && !e.contains("abc"), "{e}");
    }

    #[test]
    fn redacted_urls_keep_scheme_and_host_only() {
        for (url, shown) in [
            (
                "https://hooks.slack.com/services/T0/B0/xyz",
                "https://hooks.slack.com/[redacted]",
            ),
            (
                "https://user:pw@example.com:8443/",
                "https://example.com:8443",
            ),
            ("http://h.example?token=abc", "http://h.example/[redacted]"),
            ("tcp://siem.internal:6514", "tcp://siem.internal:6514"),
            ("hooks.example/secret", "hooks.example/[redacted]"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
    }

    #[tokio::test]
    async fn network_ca_file_is_trusted_for_https_too() {
        let (ca_pem, cert, key) = ca_and_server();
        let port = https_server(cert, key).await;
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca_pem).unwrap();
        let guard = || {
            Guard::new(vec![
                "127.0.0.0/8".parse().unwrap(),
                "::1/128".parse().unwrap(),
            ])
        };
        let request = OutRequest {
            method: ::http::Method::GET,
            url: format!("https://localhost:{port}/"),
            headers: vec![],
            body: None,
            timeout: Duration::from_secs(5),
        };

        let d = Deliverer::new(guard(), Policy::default());
        let e = d.send_http(request.clone()).await.unwrap_err();
        assert!(matches!(e, DeliveryError::Network { .. }), "{e}");

        d.set_ca_file(Some(&ca_path)).unwrap();
        let r = d.send_http(request.clone()).await.unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));

        let d = Deliverer::with_ca_file(guard(), Policy::default(), Some(&ca_path)).unwrap();
        assert_eq!(d.send_http(request).await.unwrap().status, 200);

        let e = d
            .set_ca_file(Some(&dir.path().join("missing.pem")))
            .unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
    }
}
