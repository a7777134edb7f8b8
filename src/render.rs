//! `relay render`: run a formatter (and a destination's build step) offline,
//! through exactly the code path a delivery uses (`prepare::prepare`); or a
//! source plugin on a body, through the code path of
//! `POST /api/v1/sources/{name}` (`source::Source::parse`).

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::config::WebhookSpec;
use crate::plugin::Incident;
use crate::plugin::{Kind, Limits, PluginHost};
use crate::prepare::{Prepared, prepare_in};
use crate::webhook::Registry;

/// The arguments of `relay render` (also its command-line definition).
#[derive(Debug, Clone, clap::Args)]
pub struct RenderRequest {
    /// A loaded plugin name (built-in) or a path to a `.wasm` file.
    #[arg(long, required_unless_present = "source", conflicts_with = "source")]
    pub plugin: Option<String>,
    /// The event, as posted to /api/v1/events (one event).
    #[arg(long, required_unless_present = "source", conflicts_with = "source")]
    pub event: Option<PathBuf>,
    /// A source plugin (a path to a `.wasm` file, or a loaded name): print
    /// the events it makes of `--body`, checked as the relay would (its
    /// options from --set).
    #[arg(long, requires = "body")]
    pub source: Option<String>,
    /// The body a producer would post to the source.
    #[arg(long, requires = "source")]
    pub body: Option<PathBuf>,
    /// A request header the source plugin sees, `name: value` (repeatable;
    /// default: `content-type: application/json`).
    #[arg(long = "header", value_name = "NAME: VALUE", requires = "source")]
    pub headers: Vec<String>,
    /// A formatter option, `key=value` (value parsed as JSON when it is JSON; dotted keys nest).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// A destination plugin to run after the formatter.
    #[arg(long)]
    pub destination: Option<String>,
    /// A destination option, `key=value`.
    #[arg(long = "destination-set", value_name = "KEY=VALUE")]
    pub destination_set: Vec<String>,
    /// The webhook URL the request would go to.
    #[arg(long, default_value = "https://example.invalid/hook")]
    pub url: String,
    /// The state a stateful destination kept for this event's incident (as
    /// its `classify` stored it), e.g. `{"ticket":123}` to render the request
    /// that closes that ticket. The incident key is the event id.
    #[arg(long, value_name = "TEXT")]
    pub incident_state: Option<String>,
    /// Time limit per plugin call, in ms.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

/// What would be sent.
pub struct Rendered(Prepared);

impl Rendered {
    /// The bodies, exactly as sent (several requests are separated by a newline).
    pub fn bodies(&self) -> Vec<u8> {
        match &self.0 {
            Prepared::Syslog(m) | Prepared::LocalSyslog(m) => m.to_vec(),
            Prepared::Email(e) => e.message.to_vec(),
            Prepared::Http(reqs) => {
                let mut out = Vec::new();
                for (i, r) in reqs.iter().enumerate() {
                    if i > 0 {
                        out.push(b'\n');
                    }
                    out.extend_from_slice(r.body.as_deref().unwrap_or(&[]));
                }
                out
            }
        }
    }

    /// Method, URL and headers before each body. Header values that are
    /// or look like secrets (`Authorization`, `ApiIntegrationCode`, `Secret`,
    /// a `Basic …` value, …) show as `[redacted]`: a terminal or a pasted
    /// bug report is no place for them.
    pub fn verbose(&self) -> Vec<u8> {
        match &self.0 {
            Prepared::Syslog(m) | Prepared::LocalSyslog(m) => m.to_vec(),
            Prepared::Email(e) => {
                let rcpt: Vec<String> = e.envelope.to().iter().map(|a| a.to_string()).collect();
                let from = e.envelope.from().map(|a| a.to_string()).unwrap_or_default();
                let mut out =
                    format!("MAIL FROM:<{from}>\nRCPT TO:<{}>\n\n", rcpt.join(">, <")).into_bytes();
                out.extend_from_slice(&e.message);
                out
            }
            Prepared::Http(reqs) => {
                let mut out = Vec::new();
                for r in reqs {
                    out.extend_from_slice(format!("{} {}\n", r.method, r.url).as_bytes());
                    for (k, v) in &r.headers {
                        let v = if crate::api::looks_secret(k)
                            || crate::api::looks_like_credential(v)
                        {
                            "[redacted]"
                        } else {
                            v.as_str()
                        };
                        out.extend_from_slice(format!("{k}: {v}\n").as_bytes());
                    }
                    out.push(b'\n');
                    out.extend_from_slice(r.body.as_deref().unwrap_or(&[]));
                    out.push(b'\n');
                }
                out
            }
        }
    }
}

/// Parses `key=value` pairs into a JSON object; values that parse as JSON
/// keep their type, dotted keys nest.
pub fn options_from_pairs(pairs: &[String]) -> Result<Value, String> {
    let mut root = Map::new();
    for pair in pairs {
        let (key, raw) = pair
            .split_once('=')
            .ok_or_else(|| format!("--set {pair:?} is not key=value"))?;
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
        let mut segments: Vec<&str> = key.split('.').collect();
        let last = segments
            .pop()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("--set {pair:?} has an empty key"))?;
        let mut cur = &mut root;
        for seg in segments {
            let next = cur
                .entry(seg.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            cur = match next {
                Value::Object(m) => m,
                _ => {
                    return Err(format!(
                        "--set {pair:?}: {seg} is already a value, not an object"
                    ));
                }
            };
        }
        cur.insert(last.to_owned(), value);
    }
    Ok(Value::Object(root))
}

/// A plugin host for offline runs: fresh instances, the default memory cap.
fn offline_host(timeout_ms: u64) -> Result<PluginHost, String> {
    PluginHost::new(
        Limits {
            memory_mb: 64,
            timeout_ms,
            fresh: true,
        },
        Some(std::env::temp_dir().join("relay-plugin-cache")),
    )
    .map_err(|e| e.to_string())
}

/// Loads `--plugin`/`--source` given as a `.wasm` path; returns the name.
fn load_named(host: &PluginHost, flag: &str, plugin: &str) -> Result<String, String> {
    if !plugin.ends_with(".wasm") {
        return Ok(plugin.to_owned());
    }
    let path = PathBuf::from(plugin);
    crate::plugin::load_file(host, &path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    Ok(path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned())
}

/// `relay render --source PLUGIN --body FILE`: the events a source plugin
/// makes of a body, checked by §5's rules (no catalogue; the relay's
/// default cap of events per body), as a JSON array.
pub fn render_source(req: &RenderRequest) -> Result<Vec<u8>, String> {
    let (Some(source), Some(body_path)) = (&req.source, &req.body) else {
        return Err("--source needs --body FILE".into());
    };
    let host = offline_host(req.timeout_ms)?;
    let name = load_named(&host, "--source", source)?;
    if host.get(Kind::Source, &name).is_none() {
        return Err(format!(
            "--source {name:?} is not a loaded source plugin (known: {})",
            host.names(Kind::Source).join(", ")
        ));
    }
    let body =
        std::fs::read(body_path).map_err(|e| format!("--body {}: {e}", body_path.display()))?;
    let mut headers = http::HeaderMap::new();
    let given = if req.headers.is_empty() {
        vec!["content-type: application/json".to_owned()]
    } else {
        req.headers.clone()
    };
    for h in &given {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?} is not NAME: VALUE"))?;
        let k = http::HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|_| format!("--header {h:?}: {k:?} is not a header name"))?;
        let v = http::HeaderValue::from_str(v.trim())
            .map_err(|_| format!("--header {h:?}: the value is not a header value"))?;
        headers.append(k, v);
    }
    let spec: crate::config::SourceSpec = serde_json::from_value(json!({
        "name": "render",
        "kind": "plugin",
        "plugin": name,
        "options": options_from_pairs(&req.set)?,
    }))
    .map_err(|e| format!("cannot describe the source: {e}"))?;
    let sources = crate::source::Sources::from_config(std::slice::from_ref(&spec));
    let source = sources.get("render").ok_or("internal: source missing")?;
    let bounds = crate::source::Bounds {
        max_events: crate::config::LimitsConfig::default().max_events_per_body,
        catalogue: None,
    };
    let events = crate::plugin::block_on(source.parse(&headers, &body, &bounds, &host))
        .map_err(|e| e.to_string())?;
    let mut out = serde_json::to_vec_pretty(&events).map_err(|e| e.to_string())?;
    out.push(b'\n');
    Ok(out)
}

pub fn render(req: &RenderRequest) -> Result<Rendered, String> {
    let (Some(plugin), Some(event_path)) = (&req.plugin, &req.event) else {
        return Err("render needs --plugin and --event (or --source and --body)".into());
    };
    // Compiled code is cached by content hash, so rendering a large
    // (e.g. Python) component again is fast.
    let host = offline_host(req.timeout_ms)?;
    let name = load_named(&host, "--plugin", plugin)?;
    let is_formatter = host.get(Kind::Formatter, &name).is_some();
    if !is_formatter && host.get(Kind::Destination, &name).is_none() && name != "json" {
        let mut known = host.names(Kind::Formatter);
        known.extend(host.names(Kind::Destination));
        return Err(format!(
            "--plugin {name:?} is not a loaded plugin (known: {})",
            known.join(", ")
        ));
    }
    let text =
        std::fs::read(event_path).map_err(|e| format!("--event {}: {e}", event_path.display()))?;
    let mut events = crate::ingest::parse(&text, None, 1)
        .map_err(|e| format!("--event {}: {e}", event_path.display()))?;
    let event = events
        .pop()
        .ok_or_else(|| format!("--event {}: no event", event_path.display()))?;
    let (format, destination, format_options, destination_options) =
        if is_formatter || name == "json" {
            (
                name.clone(),
                req.destination.clone(),
                options_from_pairs(&req.set)?,
                options_from_pairs(&req.destination_set)?,
            )
        } else {
            // A destination plugin alone: the event as JSON through it; its
            // options may come from --set or --destination-set.
            let mut pairs = req.set.clone();
            pairs.extend(req.destination_set.iter().cloned());
            (
                "json".to_owned(),
                Some(name.clone()),
                Value::Object(Map::new()),
                options_from_pairs(&pairs)?,
            )
        };
    let mut described = json!({
        "id": "render",
        "name": "render",
        "url": req.url,
        "format": format,
        "options": format_options,
        "destination": destination,
        "destination_options": destination_options,
    });
    let scheme = req
        .url
        .split("://")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if matches!(scheme.as_str(), "smtp" | "smtps") {
        // Placeholder addresses: render shows the message, not a real send.
        described["email"] = json!({
            "from": "relay@example.invalid",
            "to": ["recipient@example.invalid"],
        });
    }
    let spec: WebhookSpec = serde_json::from_value(described)
        .map_err(|e| format!("cannot describe the webhook: {e}"))?;
    let registry = Registry::single(spec);
    let webhooks = registry.load();
    let webhook: Arc<_> = webhooks
        .get("render")
        .cloned()
        .ok_or("internal: webhook missing")?;
    let mut warnings = Vec::new();
    let incident = Incident {
        key: event.id.clone(),
        state: req.incident_state.clone(),
    };
    let prepared = crate::plugin::block_on(prepare_in(
        &webhook,
        &event,
        "render",
        &host,
        &incident,
        &mut warnings,
    ))
    .map_err(|e| e.to_string())?;
    for w in warnings {
        eprintln!("relay: warning: {w}");
    }
    Ok(Rendered(prepared))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_pairs_become_typed_nested_options() {
        let v = options_from_pairs(&[
            "a=1".into(),
            "b.c=true".into(),
            "b.d=text".into(),
            "e=[1,2]".into(),
        ])
        .unwrap();
        assert_eq!(
            v,
            json!({"a": 1, "b": {"c": true, "d": "text"}, "e": [1, 2]})
        );
        assert!(options_from_pairs(&["novalue".into()]).is_err());
        assert!(options_from_pairs(&["a=1".into(), "a.b=2".into()]).is_err());
    }
}
