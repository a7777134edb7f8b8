//! `relay plugin new`: a plugin crate that builds against sdk/ and passes
//! its own test out of the box.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScaffoldKind {
    Formatter,
    Destination,
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
    sdk: &Path,
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
    let sdk = sdk.canonicalize().map_err(|e| {
        format!(
            "the SDK at {} cannot be found ({e}); pass --sdk PATH",
            sdk.display()
        )
    })?;
    let (kind_name, lib) = match kind {
        ScaffoldKind::Formatter => ("formatter", FORMATTER.replace("{name}", name)),
        ScaffoldKind::Destination => ("destination", DESTINATION.replace("{name}", name)),
    };
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
"#,
        sdk = sdk.display().to_string()
    );
    let readme = format!(
        "# {name}\n\nA relay {kind_name} plugin.\n\n    cargo test                                     # runs natively\n    cargo build --target wasm32-wasip2 --release   # target/wasm32-wasip2/release/{name}.wasm\n    relay render --plugin target/wasm32-wasip2/release/{name}.wasm --event event.json\n\nInstall: copy the .wasm to a temporary name in the relay's plugins directory, then\nrename it to `{name}.wasm` (a rename is atomic; the relay hot-reloads it).\n"
    );
    std::fs::create_dir_all(root.join("src"))
        .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
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
