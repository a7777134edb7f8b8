//! `relay render`: run a formatter (and a destination's build step) offline,
//! through exactly the code path a delivery uses (`prepare::prepare`).

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::config::WebhookSpec;
use crate::plugin::{Kind, Limits, PluginHost};
use crate::prepare::{Prepared, prepare};
use crate::webhook::Registry;

/// The arguments of `relay render` (also its command-line definition).
#[derive(Debug, Clone, clap::Args)]
pub struct RenderRequest {
    /// A loaded plugin name (built-in) or a path to a `.wasm` file.
    #[arg(long)]
    pub plugin: String,
    /// The event, as posted to /api/v1/events (one event).
    #[arg(long)]
    pub event: PathBuf,
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

    /// Method, URL and headers before each body.
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

pub fn render(req: &RenderRequest) -> Result<Rendered, String> {
    let host = PluginHost::new(
        Limits {
            memory_mb: 64,
            timeout_ms: req.timeout_ms,
            fresh: true,
        },
        // Compiled code is cached by content hash, so rendering a large
        // (e.g. Python) component again is fast.
        Some(std::env::temp_dir().join("relay-plugin-cache")),
    )
    .map_err(|e| e.to_string())?;
    let name = if req.plugin.ends_with(".wasm") {
        let path = PathBuf::from(&req.plugin);
        crate::plugin::load_file(&host, &path)
            .map_err(|e| format!("--plugin {}: {e}", path.display()))?;
        path.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned()
    } else {
        req.plugin.clone()
    };
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
        std::fs::read(&req.event).map_err(|e| format!("--event {}: {e}", req.event.display()))?;
    let mut events = crate::ingest::parse(&text, None, 1)
        .map_err(|e| format!("--event {}: {e}", req.event.display()))?;
    let event = events
        .pop()
        .ok_or_else(|| format!("--event {}: no event", req.event.display()))?;
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
    let prepared =
        crate::plugin::block_on(prepare(&webhook, &event, "render", &host, &mut warnings))
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
