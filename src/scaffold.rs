//! `relay plugin new`: a plugin crate (formatter, destination or source)
//! that passes its own tests and builds for `wasm32-wasip2` out of the box,
//! anywhere: the SDK and its WIT are embedded in the binary ([`SDK_FILES`])
//! and written beside the new crate (`<crate>/relay-sdk/`), so no checkout
//! of the relay is needed. `--sdk PATH` points at another SDK instead.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScaffoldKind {
    Formatter,
    Destination,
    Source,
}

/// The SDK crate as this relay was built with it: (path inside the SDK, text).
pub const SDK_FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../sdk/Cargo.toml")),
    ("README.md", include_str!("../sdk/README.md")),
    ("src/card.rs", include_str!("../sdk/src/card.rs")),
    ("src/data.rs", include_str!("../sdk/src/data.rs")),
    ("src/event.rs", include_str!("../sdk/src/event.rs")),
    ("src/lib.rs", include_str!("../sdk/src/lib.rs")),
    ("src/options.rs", include_str!("../sdk/src/options.rs")),
    ("src/source.rs", include_str!("../sdk/src/source.rs")),
    ("src/testing.rs", include_str!("../sdk/src/testing.rs")),
    ("src/text.rs", include_str!("../sdk/src/text.rs")),
    ("src/ticket.rs", include_str!("../sdk/src/ticket.rs")),
    ("src/time.rs", include_str!("../sdk/src/time.rs")),
    ("src/types.rs", include_str!("../sdk/src/types.rs")),
    (
        "wit/relay-plugin.wit",
        include_str!("../sdk/wit/relay-plugin.wit"),
    ),
];

/// Where the new crate's `relay-sdk` dependency comes from.
fn sdk_dependency(root: &Path, sdk: Option<&Path>) -> Result<String, String> {
    let Some(sdk) = sdk else {
        let dir = root.join("relay-sdk");
        for (file, text) in SDK_FILES {
            let path = dir.join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            std::fs::write(&path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        return Ok("relay-sdk".to_owned());
    };
    let sdk = sdk.canonicalize().map_err(|e| {
        format!(
            "the SDK at {} cannot be found ({e}); pass --sdk PATH or leave it out to use the SDK built into relay",
            sdk.display()
        )
    })?;
    Ok(sdk.display().to_string())
}

/// The new crate's `[profile.release]`: the built-ins' own
/// (`PLUGIN_RELEASE_PROFILE`), so that a plugin author's build runs as fast.
fn release_profile() -> String {
    let mut out = String::from(
        "\n# How relay builds its own plugins: faster guest code, a slower build.\n[profile.release]\n",
    );
    for (key, value) in relay_builtins::PLUGIN_RELEASE_PROFILE {
        out.push_str(&format!("{key} = {value}\n"));
    }
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Writes `<dir>/<name>/` and returns its path.
pub fn new_plugin(
    dir: &Path,
    name: &str,
    kind: ScaffoldKind,
    sdk: Option<&Path>,
) -> Result<PathBuf, String> {
    if !valid_name(name) {
        return Err(format!(
            "plugin name {name:?} is not valid: use lower-case letters, digits and _ (starting with a letter)"
        ));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(format!("{} already exists", root.display()));
    }
    let (kind_name, lib) = match kind {
        ScaffoldKind::Formatter => ("formatter", FORMATTER.replace("{name}", name)),
        ScaffoldKind::Destination => ("destination", DESTINATION.replace("{name}", name)),
        ScaffoldKind::Source => ("source", SOURCE.replace("{name}", name)),
    };
    std::fs::create_dir_all(root.join("src"))
        .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let sdk = sdk_dependency(&root, sdk)?;
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[package.metadata.relay]
plugin = "{name}"
kind = "{kind_name}"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
relay-sdk = {{ path = {sdk:?} }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# A crate of its own, even when created inside another workspace.
[workspace]
{profile}"#,
        profile = release_profile()
    );
    let try_it = match kind {
        ScaffoldKind::Source => format!(
            "relay render --source target/wasm32-wasip2/release/{name}.wasm --body body.json"
        ),
        _ => format!(
            "relay render --plugin target/wasm32-wasip2/release/{name}.wasm --event event.json"
        ),
    };
    let readme = format!(
        "# {name}\n\nA relay {kind_name} plugin.\n\n    cargo test                                     # runs natively\n    cargo build --target wasm32-wasip2 --release   # target/wasm32-wasip2/release/{name}.wasm\n    {try_it}\n\n`relay-sdk/` is the relay SDK (and its WIT contract) as the relay that\ncreated this crate was built with it.\n\nInstall: copy the .wasm to a temporary name in the relay's plugins directory, then\nrename it to `{name}.wasm` (a rename is atomic; the relay hot-reloads it).\n"
    );
    for (file, text) in [
        ("Cargo.toml", manifest.as_str()),
        ("src/lib.rs", lib.as_str()),
        ("README.md", readme.as_str()),
    ] {
        std::fs::write(root.join(file), text).map_err(|e| format!("cannot write {file}: {e}"))?;
    }
    Ok(root)
}

const FORMATTER: &str = r##"//! {name}: a relay formatter plugin.

use relay_sdk::{Event, Formatter, Payload, parse_options};
use serde::Deserialize;

/// Options from the webhook's `options:`; unknown keys are refused by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    prefix: String,
}

impl Default for Options {
    fn default() -> Self {
        Options { prefix: "[relay]".into() }
    }
}

pub struct Plugin(Options);

impl Formatter for Plugin {
    fn create(options: &str) -> Result<Self, String> {
        parse_options(options).map(Plugin)
    }

    fn format(&self, event: &Event) -> Result<Payload, String> {
        let title = event.text("title").unwrap_or_else(|| event.event_type.clone());
        let body = serde_json::json!({
            "text": format!("{} {}: {}", self.0.prefix, event.event_type, title),
            "event_id": event.id,
        });
        Ok(Payload {
            content_type: "application/json".into(),
            body: serde_json::to_vec(&body).map_err(|e| e.to_string())?,
        })
    }
}

relay_sdk::export_formatter!(Plugin);

#[cfg(test)]
mod tests {
    use relay_sdk::testing;
    use serde_json::{Value, json};

    #[test]
    fn formats_the_title_with_the_prefix() {
        let event = testing::event_of("finding_added", json!({"title": "SQL injection"}));
        let payload = testing::format::<super::Plugin>(r#"{"prefix": "!"}"#, &event).unwrap();
        let body: Value = serde_json::from_slice(&payload.body).unwrap();
        assert_eq!(body["text"], "! finding_added: SQL injection");
    }

    #[test]
    fn unknown_options_are_refused() {
        let event = testing::event(json!({}));
        assert!(testing::format::<super::Plugin>(r#"{"prefx": "!"}"#, &event).is_err());
    }
}
"##;

const DESTINATION: &str = r##"//! {name}: a relay destination plugin.

use relay_sdk::{Destination, Outcome, Payload, Request, Response, Target, parse_options};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Options {
    /// Extra path appended to the webhook URL.
    path: String,
}

pub struct Plugin(Options);

impl Destination for Plugin {
    fn create(options: &str) -> Result<Self, String> {
        parse_options(options).map(Plugin)
    }

    fn build(&self, payload: &Payload, target: &Target) -> Result<Vec<Request>, String> {
        let mut headers = target.headers.clone();
        headers.push(("Content-Type".into(), payload.content_type.clone()));
        Ok(vec![Request {
            method: "POST".into(),
            url: format!("{}{}", target.url.trim_end_matches('/'), self.0.path),
            headers,
            body: payload.body.clone(),
        }])
    }

    fn classify(&self, response: &Response) -> Outcome {
        match response.status {
            200..=299 => Outcome::Success,
            408 | 429 | 500..=599 => Outcome::Retry(None),
            410 => Outcome::Disable("the endpoint is gone".into()),
            s => Outcome::Fail(format!("HTTP {s}")),
        }
    }
}

relay_sdk::export_destination!(Plugin);

#[cfg(test)]
mod tests {
    use relay_sdk::{Outcome, testing};

    #[test]
    fn server_errors_are_retried_and_client_errors_fail() {
        assert_eq!(testing::classify::<super::Plugin>("{}", &testing::response(503, &[], "")).unwrap(), Outcome::Retry(None));
        assert!(matches!(testing::classify::<super::Plugin>("{}", &testing::response(400, &[], "")).unwrap(), Outcome::Fail(_)));
    }
}
"##;

const SOURCE: &str = r##"//! {name}: a relay source plugin. relay.yaml:
//!
//! ```yaml
//! sources:
//!   - { name: {name}, kind: plugin, plugin: {name} }
//! ```
//!
//! then the tool posts its body to `POST /api/v1/sources/{name}`.

use relay_sdk::{Source, SourceEvent, parse_options};
use serde::Deserialize;
use serde_json::Value;

/// Options from the source's `options:`; unknown keys are refused by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    /// The event type of every event.
    event_type: String,
}

impl Default for Options {
    fn default() -> Self {
        Options { event_type: "{name}_alert".into() }
    }
}

pub struct Plugin(Options);

impl Source for Plugin {
    fn create(options: &str) -> Result<Self, String> {
        parse_options(options).map(Plugin)
    }

    /// `{"alerts": [{"id": "...", "title": "...", ...}, ...]}`: one event per
    /// alert; its `id` (when given) makes a re-sent body a duplicate.
    fn parse(&self, _headers: &[(String, String)], body: &[u8]) -> Result<Vec<SourceEvent>, String> {
        let body: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let alerts = body["alerts"].as_array().ok_or("the body has no alerts array")?;
        Ok(alerts
            .iter()
            .map(|a| {
                let id = a["id"].as_str().map(str::to_owned);
                SourceEvent::new(self.0.event_type.clone(), a.clone()).with_id(id)
            })
            .collect())
    }
}

relay_sdk::export_source!(Plugin);

#[cfg(test)]
mod tests {
    use relay_sdk::testing;

    #[test]
    fn one_event_per_alert_with_its_id() {
        let body = br#"{"alerts": [{"id": "a1", "title": "Port scan"}, {"title": "No id"}]}"#;
        let events = testing::parse::<super::Plugin>("{}", &[], body).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].id.as_deref(), Some("a1"));
        assert_eq!(events[0].event_type, "{name}_alert");
        assert_eq!(events[1].data["title"], "No id");
    }

    #[test]
    fn a_body_without_alerts_is_refused() {
        assert!(testing::parse::<super::Plugin>("{}", &[], b"{}").is_err());
    }
}
"##;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of sdk/ is embedded, so a new crate gets the whole SDK.
    #[test]
    fn the_embedded_sdk_is_every_file_of_sdk_and_matches_it() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk");
        let mut on_disk = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    on_disk.push(p.strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = SDK_FILES.iter().map(|(f, _)| f.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
        for (file, text) in SDK_FILES {
            assert_eq!(
                std::fs::read_to_string(root.join(file)).unwrap(),
                *text,
                "{file}"
            );
        }
    }

    #[test]
    fn a_new_crate_carries_the_sdk_and_depends_on_it_by_a_relative_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = new_plugin(dir.path(), "my_source", ScaffoldKind::Source, None).unwrap();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(r#"relay-sdk = { path = "relay-sdk" }"#),
            "{manifest}"
        );
        assert!(manifest.contains(r#"kind = "source""#), "{manifest}");
        assert!(root.join("relay-sdk/wit/relay-plugin.wit").is_file());
        let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
        assert!(lib.contains("export_source!(Plugin)") && !lib.contains("{name}"));
        let again = new_plugin(dir.path(), "my_source", ScaffoldKind::Source, None).unwrap_err();
        assert!(again.contains("already exists"), "{again}");
    }

    #[test]
    fn a_new_crate_builds_its_release_with_the_builtins_profile() {
        let dir = tempfile::tempdir().unwrap();
        let root = new_plugin(dir.path(), "fast", ScaffoldKind::Formatter, None).unwrap();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let section = manifest
            .split_once("[profile.release]\n")
            .map(|(_, rest)| rest)
            .unwrap_or_else(|| panic!("no [profile.release] in\n{manifest}"));
        let keys: Vec<&str> = section
            .lines()
            .take_while(|l| !l.starts_with('['))
            .filter(|l| !l.trim().is_empty())
            .collect();
        let expected: Vec<String> = relay_builtins::PLUGIN_RELEASE_PROFILE
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        assert_eq!(keys, expected);
        assert!(expected.contains(&"lto = true".to_string()), "{expected:?}");
    }
}
