//! The checks of relay.yaml that need more than the config's own types:
//! the SSRF guard (`deliver`), the CA file (`deliver::tls`), signing keys
//! (`sign`), the formats and destination plugins known (`format`), and the
//! development tokens off loopback. `config` stays a leaf of plain types
//! that imports no sibling module; this module sits above it and the
//! modules whose rules it applies.
//!
//! Owns: the order of the load-time checks. [`parse`] and [`load`] are
//! what every caller that reads relay.yaml uses (`serve`, `check`, hot
//! reload); [`webhook`] checks one webhook spec (relay.yaml or the API).

use std::path::Path;

use crate::config::{Config, ConfigError, SignatureProfile, ValidationContext, WebhookSpec};

/// Parses relay.yaml's text and runs every check. Errors name the file
/// (and `line:col` for what the parser reports).
pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
    let cfg = Config::parse(text, path)?;
    config(&cfg, path)?;
    Ok(cfg)
}

/// Reads relay.yaml and runs every check.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// The checks of a parsed config that need other modules.
pub fn config(cfg: &Config, path: &str) -> Result<(), ConfigError> {
    let invalid = |field: String, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        field,
        message,
    };
    if let Some(ca) = &cfg.network.ca_file
        && let Err(e) = crate::deliver::tls::client_config(Some(&ca.0))
    {
        return Err(invalid(
            "network.ca_file".into(),
            format!("{}: {}", ca.0.display(), e.message),
        ));
    }
    let files = crate::format::file_plugin_names(&cfg.plugins.dir.0);
    let mut formats = crate::format::known_formats();
    formats.extend(files.iter().cloned());
    let mut destinations = crate::format::known_destinations();
    destinations.extend(files);
    let ctx = cfg.validation_context(&formats, &destinations);
    for (i, w) in cfg.webhooks.iter().enumerate() {
        beyond_config(w, &format!("webhooks[{i}]"), &ctx).map_err(|(f, m)| invalid(f, m))?;
    }
    ack_links(cfg).map_err(|(f, m)| invalid(f, m))?;
    Ok(())
}

/// `{{ack_url}}` needs `incidents.ack` (its base_url and secret), and a
/// link must live at least a second.
fn ack_links(cfg: &Config) -> Result<(), (String, String)> {
    if let Some(ack) = &cfg.incidents.ack
        && ack.ttl_s == 0
    {
        return Err((
            "incidents.ack.ttl_s".into(),
            "0 would make every link expired; give at least 1 (seconds)".into(),
        ));
    }
    if cfg
        .incidents
        .pagerduty
        .as_ref()
        .is_some_and(|p| p.secrets.iter().all(|k| k.expose().is_empty()))
    {
        return Err((
            "incidents.pagerduty.secrets".into(),
            "list at least one signing secret of the PagerDuty webhook subscription".into(),
        ));
    }
    if cfg.incidents.ack.is_some() {
        return Ok(());
    }
    for (i, w) in cfg.webhooks.iter().enumerate() {
        if crate::incident::ack::wanted(w) {
            return Err((
                format!("webhooks[{i}]"),
                format!(
                    "webhook {:?} uses {{{{ack_url}}}}, but incidents.ack (base_url, secret) is not set",
                    w.name
                ),
            ));
        }
    }
    Ok(())
}

/// Every check of one webhook spec: the config's own
/// ([`WebhookSpec::validate`]) then those that need other modules. Errors
/// are `(field, message)`, the field prefixed with `field`.
pub fn webhook(
    spec: &WebhookSpec,
    field: &str,
    ctx: &ValidationContext<'_>,
) -> Result<(), (String, String)> {
    spec.validate(field, ctx)?;
    beyond_config(spec, field, ctx)
}

/// The checks of one webhook that need the guard, signing or the formats.
fn beyond_config(
    w: &WebhookSpec,
    field: &str,
    ctx: &ValidationContext<'_>,
) -> Result<(), (String, String)> {
    let err = |f: &str, m: String| Err((format!("{field}.{f}"), m));
    let guard = crate::deliver::Guard::new(ctx.allow_private.to_vec());
    let mut urls = vec![("url", &w.url)];
    if let Some(auth) = &w.auth {
        urls.push(("auth.oauth2.token_url", &auth.oauth2.token_url));
    }
    for (f, url) in urls {
        if let Some(ip) = url.literal_ip()
            && let Err(why) = guard.check(ip)
        {
            return err(
                f,
                format!(
                    "{:?} points at {ip}, which is {why}; add it to network.allow_private to allow it",
                    url.redacted()
                ),
            );
        }
    }
    if let Some(e) = &w.email {
        crate::deliver::email::check_mailbox(&e.from.0)
            .map_err(|m| (format!("{field}.email.from"), m))?;
        for (list, name) in [(&e.to, "to"), (&e.cc, "cc")] {
            for (i, a) in list.iter().enumerate() {
                crate::deliver::email::check_mailbox(&a.0)
                    .map_err(|m| (format!("{field}.email.{name}[{i}]"), m))?;
            }
        }
    }
    if w.signature == SignatureProfile::Standard
        && let Some(secret) = &w.secret
        && crate::sign::standard_key(secret.expose()).is_err()
    {
        return err(
            "secret",
            "the standard signature profile needs a whsec_<base64> secret".into(),
        );
    }
    if !ctx.known_formats.iter().any(|f| f == &w.format) {
        return err(
            "format",
            format!(
                "{:?} is not a loaded formatter (known: {})",
                w.format,
                ctx.known_formats.join(", ")
            ),
        );
    }
    if let Some(d) = &w.destination
        && !ctx.known_destinations.iter().any(|k| k == d)
    {
        return err(
            "destination",
            format!("{d:?} is not a loaded destination plugin"),
        );
    }
    Ok(())
}

/// The development tokens in the shipped relay.yaml start with `dev-`; they
/// are only accepted when the relay listens on loopback.
pub fn dev_tokens(cfg: &Config) -> Result<(), String> {
    if cfg.listen.0.ip().is_loopback() {
        return Ok(());
    }
    for t in &cfg.auth.tokens {
        if t.token.expose().starts_with("dev-") {
            return Err(format!(
                "auth.tokens {:?} uses a development default token but listen is {}: set a real token (e.g. via its environment variable) or listen on 127.0.0.1",
                t.name, cfg.listen.0
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_url_without_incidents_ack_ttl_0_and_no_pagerduty_secret_are_refused_naming_the_field() {
        let hook = "webhooks:\n  - name: sms\n    url: https://x.example\n    body: {text: \"ack: {{ack_url}}\"}\n";
        let e = parse(hook, "r.yaml").unwrap_err().to_string();
        assert!(
            e.contains("webhooks[0]") && e.contains("\"sms\"") && e.contains("incidents.ack"),
            "{e}"
        );
        let with = format!(
            "incidents: {{ack: {{base_url: 'https://relay.example', secret: k3y}}}}\n{hook}"
        );
        let c = parse(&with, "r.yaml").expect("ack configured");
        assert_eq!(c.incidents.ack.map(|a| a.ttl_s), Some(86_400));
        let e = parse(
            "incidents: {ack: {base_url: 'https://relay.example', secret: k3y, ttl_s: 0}}\n",
            "r.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("incidents.ack.ttl_s") && !e.contains("k3y"),
            "{e}"
        );
        let e = parse("incidents: {pagerduty: {secrets: []}}\n", "r.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("incidents.pagerduty.secrets"), "{e}");
        parse("incidents: {pagerduty: {secrets: [pd-k3y]}}\n", "r.yaml").expect("one secret");
    }

    #[test]
    fn get_with_body_and_http_without_allow_http_are_refused() {
        let e = parse(
            "webhooks:\n  - name: a\n    url: https://x.example\n    method: GET\n    body: {a: 1}\n",
            "r.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("webhooks[0].body"), "{e}");
        let e = parse(
            "network: {allow_http: true}\nwebhooks:\n  - name: a\n    url: http://10.1.2.3/\n",
            "r.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("webhooks[0].url") && e.contains("private"),
            "{e}"
        );
        let e = parse(
            "webhooks:\n  - name: a\n    url: http://x.example\n",
            "r.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("webhooks[0].url") && e.contains("allow_http"),
            "{e}"
        );
    }

    #[test]
    fn url_errors_show_scheme_and_host_but_never_path_or_query() {
        for yaml in [
            "webhooks:\n  - name: a\n    url: \"ftp://x.example/p4th?q=s3cret\"\n",
            "webhooks:\n  - name: a\n    url: \"http://x.example/p4th?q=s3cret\"\n",
            "network: {allow_http: true}\nwebhooks:\n  - name: a\n    url: \"http://10.0.0.1/p4th?q=s3cret\"\n",
            "webhooks:\n  - name: a\n    url: \"udp://x.example/p4th?q=s3cret\"\n",
            "webhooks:\n  - name: a\n    url: \"https://x.example/p4th?q=s3cret with space\"\n",
        ] {
            let e = parse(yaml, "r.yaml").unwrap_err().to_string();
            assert!(e.contains("x.example") || e.contains("10.0.0.1"), "{e}");
            assert!(!e.contains("p4th") && !e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn token_urls_and_email_addresses_are_checked_at_load_naming_the_field() {
        let check = |hook: &str| match parse(
            &format!("network: {{}}\nwebhooks:\n  - name: w\n{hook}"),
            "r.yaml",
        ) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        let e = check(
            "    url: https://h.example/x\n    auth: {oauth2: {token_url: \"https://10.1.2.3/t\", client_id: c, client_secret: s}}\n",
        );
        assert!(
            e.contains("webhooks[0].auth.oauth2.token_url") && e.contains("allow_private"),
            "{e}"
        );
        let e = check(
            "    url: smtp://m.example\n    format: email\n    email: {from: \"Relay <relay@example.com>\", to: [not an address]}\n",
        );
        assert!(
            e.contains("webhooks[0].email.to[0]") && e.contains("not an email address"),
            "{e}"
        );
    }

    #[test]
    fn ca_file_must_be_a_readable_pem_of_certificates() {
        let e = parse("network: {ca_file: /nonexistent/ca.pem}\n", "r.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("network.ca_file") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }
}
