//! A WebAssembly `source` plugin (`relay:plugin/ingest`): the plugin host
//! runs it in the same sandbox and limits as formatters and destinations;
//! here its output becomes event objects for §5's check.
//!
//! Owns: which request headers a source plugin sees.

use serde_json::Value;

use super::event_object;
use crate::plugin::{PluginError, PluginHost, SourceOutput};

/// Headers a plugin never sees: the caller's credentials.
const HIDDEN: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

pub(super) enum Failed {
    Plugin(PluginError),
    TooMany(usize),
}

pub(super) async fn parse(
    plugins: &PluginHost,
    plugin: &str,
    options: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    max_events: usize,
) -> Result<Vec<Value>, Failed> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| !HIDDEN.contains(&k.as_str()))
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let found = match plugins
        .parse_source(plugin, options, &headers, body, max_events)
        .await
        .map_err(Failed::Plugin)?
    {
        SourceOutput::TooMany(n) => return Err(Failed::TooMany(n)),
        SourceOutput::Events(e) => e,
    };
    found
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let data: Value = serde_json::from_str(&e.data).map_err(|err| {
                Failed::Plugin(PluginError::Output(format!(
                    "event {i}: data is not JSON: {err}"
                )))
            })?;
            Ok(event_object(&e.event_type, e.id, e.time, data))
        })
        .collect()
}
