//! Email delivery (DESIGN §18): `smtp://host[:587]` with STARTTLS required
//! (plaintext only with `allow_plaintext: true` to an address inside
//! `network.allow_private`) and `smtps://host[:465]` (implicit TLS), sent by
//! `lettre` over tokio and rustls (ring).
//!
//! Owns: turning a formatter's `{subject, text, html}` payload into one
//! `multipart/alternative` message ([`compose`]), and sending it
//! ([`send`]): resolve the host through the SSRF guard, connect to an
//! allowed address, TLS (implicit or STARTTLS) trusting the webpki roots
//! plus `network.ca_file`, AUTH when the webhook has `email.username` (the
//! password is its `secret`), MAIL/RCPT/DATA, QUIT.
//!
//! Outcomes map onto the one [`DeliveryError`]: a 4xx reply is
//! [`DeliveryError::Smtp`] and retried, a 5xx reply is `Smtp` and fails;
//! connection, TLS and protocol failures are `Network` (retried), and the
//! whole exchange is bounded by the webhook's `timeout_ms` (`Timeout`).
//!
//! **Architecture Invariant:** the SMTP password never reaches an error or
//! log line; an error quotes at most the server's one-line reply.

use std::net::SocketAddr;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use serde::Deserialize;

use super::error::DeliveryError;
use super::guard::Guard;
use crate::config::EmailSpec;

/// Whether `text` is one mailbox (`a@example.com` or `Name <a@example.com>`).
pub fn check_mailbox(text: &str) -> Result<(), String> {
    text.parse::<Mailbox>()
        .map(|_| ())
        .map_err(|e| format!("{text:?} is not an email address ({e})"))
}

/// What an email formatter writes (the `email` built-in, or any plugin
/// producing the same JSON).
#[derive(Debug, Deserialize)]
pub struct Mail {
    pub subject: String,
    pub text: String,
    #[serde(default)]
    pub html: Option<String>,
}

/// One message ready to send: its envelope and its RFC 5322 bytes.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub envelope: lettre::address::Envelope,
    pub message: bytes::Bytes,
}

/// Builds the message of one delivery from the formatter's payload. The
/// `Message-ID` is the delivery's (`<delivery_id@relay.invalid>`), so every
/// attempt of one delivery is the same message to the receiving side.
pub fn compose(
    spec: &EmailSpec,
    payload: &[u8],
    delivery_id: &str,
) -> Result<Outgoing, DeliveryError> {
    let mail: Mail = serde_json::from_slice(payload).map_err(|e| DeliveryError::Plugin {
        plugin: "email".into(),
        message: format!("the formatter's payload is not an email ({{subject, text, html}}): {e}"),
        retryable: false,
    })?;
    let mailbox = |field: &str, text: &str| {
        text.parse::<Mailbox>().map_err(|e| {
            DeliveryError::Config(format!(
                "email.{field}: {text:?} is not an email address ({e})"
            ))
        })
    };
    // One line, whatever a formatter wrote: no header injection.
    let subject: String = mail
        .subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut builder = lettre::Message::builder()
        .from(mailbox("from", &spec.from.0)?)
        .subject(subject.trim())
        .message_id(Some(format!("<{delivery_id}@relay.invalid>")))
        .date_now();
    for to in &spec.to {
        builder = builder.to(mailbox("to", &to.0)?);
    }
    for cc in &spec.cc {
        builder = builder.cc(mailbox("cc", &cc.0)?);
    }
    let message = match mail.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(mail.text, html)),
        None => builder
            .header(header::ContentType::TEXT_PLAIN)
            .body(mail.text),
    }
    .map_err(|e| DeliveryError::Config(format!("cannot build the email: {e}")))?;
    Ok(Outgoing {
        envelope: message.envelope().clone(),
        message: message.formatted().into(),
    })
}

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub port: u16,
    /// `smtps://`: TLS from the first byte.
    pub implicit_tls: bool,
}

impl Server {
    /// `smtp://host[:587]` or `smtps://host[:465]`.
    pub fn parse(url: &str) -> Result<Server, DeliveryError> {
        let bad = || {
            DeliveryError::Config(format!(
                "{:?} is not an smtp:// or smtps:// URL",
                super::redact_url(url)
            ))
        };
        let uri: http::Uri = url.parse().map_err(|_| bad())?;
        let implicit_tls = match uri.scheme_str() {
            Some("smtp") => false,
            Some("smtps") => true,
            _ => return Err(bad()),
        };
        let host = uri
            .host()
            .ok_or_else(bad)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri
            .port_u16()
            .unwrap_or(if implicit_tls { 465 } else { 587 });
        Ok(Server {
            host,
            port,
            implicit_tls,
        })
    }

    fn shown(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// How one email is sent.
pub struct SendOptions<'a> {
    pub guard: &'a Guard,
    /// PEM of `network.ca_file`, trusted besides the webpki roots.
    pub ca_pem: Option<&'a [u8]>,
    /// `allow_plaintext: true` (still only to a listed address).
    pub allow_plaintext: bool,
    /// `email.username` and the webhook's `secret`.
    pub login: Option<(&'a str, &'a str)>,
    pub timeout: Duration,
}

/// Sends `out` to the server of `url`. Success: the server accepted the
/// message (`250` after DATA).
pub async fn send(url: &str, out: &Outgoing, o: &SendOptions<'_>) -> Result<(), DeliveryError> {
    let server = Server::parse(url)?;
    let shown = server.shown();
    let exchange = async {
        let addrs = o.guard.resolve(&server.host, server.port, &shown).await?;
        let mut last = None;
        for addr in addrs {
            match send_to(&server, addr, out, o).await {
                Ok(()) => return Ok(()),
                // Only a failure to connect tries the next address.
                Err((true, e)) => last = Some(e),
                Err((false, e)) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| DeliveryError::Network {
            host: shown.clone(),
            reason: "no address to connect to".into(),
        }))
    };
    match tokio::time::timeout(o.timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(DeliveryError::Timeout {
            host: shown,
            timeout_ms: u64::try_from(o.timeout.as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

/// One connection's exchange. `Err((true, _))` when connecting failed
/// (another address may work).
async fn send_to(
    server: &Server,
    addr: SocketAddr,
    out: &Outgoing,
    o: &SendOptions<'_>,
) -> Result<(), (bool, DeliveryError)> {
    let shown = server.shown();
    let tls = || tls_parameters(&server.host, o.ca_pem).map_err(|e| (false, e));
    let hello = ClientId::default();
    let implicit = if server.implicit_tls {
        Some(tls()?)
    } else {
        None
    };
    let mut conn =
        AsyncSmtpConnection::connect_tokio1(addr, Some(o.timeout), &hello, implicit, None)
            .await
            .map_err(|e| (true, classify(&shown, &e)))?;
    let result = async {
        if !server.implicit_tls {
            if conn.can_starttls() {
                conn.starttls(tls()?, &hello)
                    .await
                    .map_err(|e| (false, classify(&shown, &e)))?;
            } else if !(o.allow_plaintext && o.guard.lists(addr.ip())) {
                return Err((
                    false,
                    DeliveryError::Network {
                        host: shown.clone(),
                        reason: if o.allow_plaintext {
                            format!("the server offers no STARTTLS, and {} is not in network.allow_private (plaintext SMTP goes only there)", addr.ip())
                        } else {
                            "the server offers no STARTTLS; the relay sends email only encrypted (allow_plaintext: true permits plaintext to a host in network.allow_private)".into()
                        },
                    },
                ));
            }
        }
        if let Some((user, password)) = o.login {
            let credentials = Credentials::new(user.to_owned(), password.to_owned());
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                .await
                .map_err(|e| (false, classify(&shown, &e)))?;
        }
        conn.send(&out.envelope, &out.message)
            .await
            .map_err(|e| (false, classify(&shown, &e)))?;
        Ok(())
    }
    .await;
    // After a failure the connection is dropped, not sent QUIT: its stream
    // may be half-upgraded to TLS, where a QUIT would wait for nothing.
    if result.is_ok() {
        let _ = conn.quit().await;
    }
    result
}

fn tls_parameters(host: &str, ca_pem: Option<&[u8]>) -> Result<TlsParameters, DeliveryError> {
    let mut b =
        TlsParameters::builder(host.to_owned()).certificate_store(CertificateStore::WebpkiRoots);
    if let Some(pem) = ca_pem {
        let cert = Certificate::from_pem(pem)
            .map_err(|e| DeliveryError::Config(format!("network.ca_file: {e}")))?;
        b = b.add_root_certificate(cert);
    }
    b.build_rustls()
        .map_err(|e| DeliveryError::Config(format!("cannot set up TLS for {host}: {e}")))
}

/// An SMTP failure as a [`DeliveryError`]: replies keep their code (4xx
/// retried, 5xx failed); anything else (connection, TLS, a broken
/// exchange) is a network error, retried.
fn classify(shown: &str, e: &lettre::transport::smtp::Error) -> DeliveryError {
    let reason = one_line(&e.to_string());
    match e.status() {
        Some(code) if e.is_transient() || e.is_permanent() => DeliveryError::Smtp {
            host: shown.to_owned(),
            code: u16::from(code),
            message: reason,
        },
        _ if e.is_timeout() => DeliveryError::Timeout {
            host: shown.to_owned(),
            timeout_ms: 0,
        },
        _ => DeliveryError::Network {
            host: shown.to_owned(),
            reason,
        },
    }
}

/// A server's text, on one line and at most 300 characters.
fn one_line(s: &str) -> String {
    let line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    line.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EnvString;

    fn spec() -> EmailSpec {
        EmailSpec {
            from: EnvString("Relay <relay@example.com>".into()),
            to: vec![EnvString("soc@example.com".into())],
            cc: vec![EnvString("Ops Team <ops@example.com>".into())],
            username: None,
        }
    }

    #[test]
    fn the_message_is_multipart_alternative_with_the_delivery_as_message_id() {
        let payload = br#"{"subject":"[high] Caf\u00e9 \r\nBcc: x@evil.example","text":"plain","html":"<p>html</p>"}"#;
        let out = compose(&spec(), payload, "0190-abc").unwrap();
        let text = String::from_utf8(out.message.to_vec()).unwrap();
        assert!(
            text.contains("Message-ID: <0190-abc@relay.invalid>\r\n"),
            "{text}"
        );
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(!text.contains("\r\nBcc:"), "{text}");
        let rcpt: Vec<String> = out.envelope.to().iter().map(|a| a.to_string()).collect();
        assert_eq!(rcpt, ["soc@example.com", "ops@example.com"]);
        assert_eq!(
            out.envelope.from().map(|a| a.to_string()).as_deref(),
            Some("relay@example.com")
        );
        let e = compose(&spec(), b"{\"text\":\"no subject\"}", "d").unwrap_err();
        assert!(
            matches!(
                e,
                DeliveryError::Plugin {
                    retryable: false,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn smtp_urls_default_to_the_submission_ports() {
        let s = Server::parse("smtp://mail.example").unwrap();
        assert_eq!((s.port, s.implicit_tls), (587, false));
        let s = Server::parse("smtps://[::1]").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.implicit_tls),
            ("::1", 465, true)
        );
        assert_eq!(s.shown(), "[::1]:465");
        assert_eq!(Server::parse("smtp://m.example:2525").unwrap().port, 2525);
        assert!(Server::parse("https://m.example").is_err());
    }

    #[test]
    fn smtp_replies_are_retried_on_4xx_and_failed_on_5xx() {
        use lettre::transport::smtp::response::{Category, Code, Detail, Severity};
        let reply = |severity, detail| DeliveryError::Smtp {
            host: "m:25".into(),
            code: u16::from(Code::new(severity, Category::MailSystem, detail)),
            message: "x".into(),
        };
        let t = reply(Severity::TransientNegativeCompletion, Detail::One);
        assert_eq!(
            (t.kind(), t.retryable(), t.origin()),
            ("smtp_status", true, super::super::Origin::Upstream)
        );
        let p = reply(Severity::PermanentNegativeCompletion, Detail::Zero);
        assert!(matches!(p, DeliveryError::Smtp { code: 550, .. }));
        assert!(!p.retryable());
    }
}
