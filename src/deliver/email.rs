//! Email delivery (DESIGN §18): `smtp://host[:587]` with STARTTLS required
//! (plaintext only with `allow_plaintext: true` to a host in
//! `network.allow_private`) and `smtps://host[:465]` (implicit TLS), sent by
//! `lettre` over tokio and rustls (ring).

/// Whether `text` is one mailbox (`a@example.com` or `Name <a@example.com>`).
pub fn check_mailbox(text: &str) -> Result<(), String> {
    text.parse::<lettre::message::Mailbox>()
        .map(|_| ())
        .map_err(|e| format!("{text:?} is not an email address ({e})"))
}
