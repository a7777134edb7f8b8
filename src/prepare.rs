//! What one attempt sends: rendered headers, the formatted body (core
//! template or formatter plugin), the destination plugin's requests (only
//! to the webhook URL's host or its `destination_hosts`), and the signature
//! headers; a stateful destination also gets the incident's key and state.
//! Pure apart from plugin calls (async: wasm on a
//! fiber, see `plugin`).

use std::time::Duration;

use bytes::Bytes;

use crate::deliver::{DeliveryError, OutRequest};
use crate::event::{Event, now_ms};
use crate::format::Formatted;
use crate::payload::Payload;
use crate::plugin::{Incident, Kind, PluginError, PluginHost, Target};
use crate::webhook::Webhook;

/// The wire form of one attempt.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// HTTP request(s), sent in order; all must succeed.
    Http(Vec<OutRequest>),
    /// One syslog message for a `udp://`, `tcp://` or `tls://` URL.
    Syslog(Bytes),
    /// One email for an `smtp://` or `smtps://` URL.
    Email(crate::deliver::email::Outgoing),
    /// One RFC 5424 message for the host's syslog socket (`unix://`),
    /// made by the `syslog` crate's formatter.
    LocalSyslog(Bytes),
}

/// The destination plugin a webhook uses: the one it names, or else a
/// destination with the same name as its formatter (so `format: slack`
/// gets Slack's response handling).
pub fn destination_of(w: &Webhook, plugins: &PluginHost) -> Option<String> {
    match &w.spec.destination {
        Some(d) => Some(d.clone()),
        None if w.spec.format != "json"
            && plugins.get(Kind::Destination, &w.spec.format).is_some() =>
        {
            Some(w.spec.format.clone())
        }
        None => None,
    }
}

/// A destination's requests may go only to the webhook URL's host, or to
/// a host listed in its `destination_hosts`, over http(s).
fn check_hosts(
    spec: &crate::config::WebhookSpec,
    requests: Vec<OutRequest>,
) -> Result<Vec<OutRequest>, PluginError> {
    let host_of = |url: &str| {
        let uri = url.parse::<http::Uri>().ok()?;
        match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http") => {
                uri.host().map(str::to_ascii_lowercase)
            }
            _ => None,
        }
    };
    let own = host_of(spec.url.as_str());
    for r in &requests {
        let Some(host) = host_of(&r.url) else {
            return Err(PluginError::Output(
                "built a request whose URL is not an absolute http(s) URL".into(),
            ));
        };
        let allowed = own.as_deref() == Some(host.as_str())
            || spec.destination_hosts.iter().any(|h| h.as_str() == host);
        if !allowed {
            return Err(PluginError::Output(format!(
                "built a request to host {host:?}, which is neither the webhook URL's host nor listed in its destination_hosts"
            )));
        }
    }
    Ok(requests)
}

fn render_headers(
    w: &Webhook,
    event: &Event,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, String)>, DeliveryError> {
    let vars = crate::template::Vars::of(event);
    let mut headers = Vec::with_capacity(w.spec.headers.0.len() + 4);
    for (name, value) in &w.spec.headers.0 {
        let v = crate::template::render_text(value, &vars, warnings);
        if http::HeaderValue::from_str(&v).is_err() {
            return Err(DeliveryError::Config(format!(
                "header {} rendered to a value that is not allowed in HTTP",
                name.as_str()
            )));
        }
        headers.push((name.as_str().to_owned(), v));
    }
    Ok(headers)
}

/// Builds what one attempt of `delivery_id` sends, outside any incident.
pub async fn prepare(
    w: &Webhook,
    event: &Event,
    delivery_id: &str,
    plugins: &PluginHost,
    warnings: &mut Vec<String>,
) -> Result<Prepared, DeliveryError> {
    prepare_in(
        w,
        event,
        delivery_id,
        plugins,
        &Incident::default(),
        warnings,
    )
    .await
}

/// Builds what one attempt of `delivery_id` sends; a stateful destination
/// gets `incident` (its key and stored state) in `build`.
pub async fn prepare_in(
    w: &Webhook,
    event: &Event,
    delivery_id: &str,
    plugins: &PluginHost,
    incident: &Incident,
    warnings: &mut Vec<String>,
) -> Result<Prepared, DeliveryError> {
    prepare_shared(w, event, delivery_id, plugins, incident, warnings, None).await
}

/// [`prepare_in`], taking the body from `shared` when another delivery of
/// the same event already rendered it with an equal template (see
/// [`Formatted`]).
pub async fn prepare_shared(
    w: &Webhook,
    event: &Event,
    delivery_id: &str,
    plugins: &PluginHost,
    incident: &Incident,
    warnings: &mut Vec<String>,
    shared: Option<&Formatted>,
) -> Result<Prepared, DeliveryError> {
    let format = async |warnings: &mut Vec<String>| {
        crate::format::format_shared(w, event, plugins, warnings, shared).await
    };
    let spec = &w.spec;
    if matches!(spec.url.scheme(), "udp" | "tcp" | "tls") {
        let payload = format(warnings).await?;
        return Ok(Prepared::Syslog(payload.body));
    }
    if spec.url.scheme() == "unix" {
        return crate::deliver::local_syslog::compose(event, &w.format_options)
            .map(|m| Prepared::LocalSyslog(m.into()));
    }
    if matches!(spec.url.scheme(), "smtp" | "smtps") {
        let Some(email) = &spec.email else {
            return Err(DeliveryError::Config(
                "an smtp:// or smtps:// webhook needs email: {from, to}".into(),
            ));
        };
        let payload = format(warnings).await?;
        return crate::deliver::email::compose(email, &payload.body, delivery_id)
            .map(Prepared::Email);
    }
    let method = spec.method.as_http();
    let mut headers = render_headers(w, event, warnings)?;
    let payload = if method == http::Method::GET {
        None
    } else {
        Some(format(warnings).await?)
    };
    let timeout = Duration::from_millis(spec.timeout_ms.0);
    let mut requests = match destination_of(w, plugins) {
        Some(d) => {
            let target = Target {
                url: spec.url.as_str().to_owned(),
                method: method.as_str().to_owned(),
                headers,
                timeout,
            };
            let empty = Payload {
                content_type: String::new(),
                body: Bytes::new(),
            };
            plugins
                .build_in(
                    &d,
                    &w.destination_options,
                    payload.as_ref().unwrap_or(&empty),
                    &target,
                    incident,
                )
                .await
                .and_then(|requests| check_hosts(spec, requests))
                .map_err(|e| e.into_delivery(&d))?
        }
        None => {
            if let Some(p) = &payload
                && spec.headers.get("content-type").is_none()
            {
                headers.push(("Content-Type".to_owned(), p.content_type.clone()));
            }
            vec![OutRequest {
                method,
                url: spec.url.as_str().to_owned(),
                headers,
                body: payload.map(|p| p.body),
                timeout,
            }]
        }
    };
    if let Some(secret) = &spec.secret {
        let timestamp = now_ms() / 1000;
        for r in &mut requests {
            let sig = crate::sign::headers(
                spec.signature,
                spec.signature_header.as_ref().map(|h| h.as_str()),
                secret.expose(),
                delivery_id,
                timestamp,
                r.body.as_deref().unwrap_or(&[]),
            )
            .map_err(DeliveryError::Config)?;
            r.headers.extend(sig);
        }
    }
    Ok(Prepared::Http(requests))
}
