//! A source plugin, the Rust example of the `source` world, that can also
//! misbehave on purpose (its `mode` option) so the host's sandbox can be
//! tested on sources like on formatters (`tests/plugins/hostile`):
//!
//! - `ok` (default): a scanner's body `{"scanner": S, "findings": [{"id",
//!   "title", "severity"}, …]}` becomes one `finding_added` event per
//!   finding, id `S:<id>`; data carries the title, severity, scanner, the
//!   request's content type and whether the plugin saw an authorization
//!   header (it never should). A body of another shape is refused.
//! - `loop` never returns, `memory` grows memory without bound, `trap`
//!   panics, `huge` returns one event with 100 MiB of data (past any memory
//!   cap), `big` one with 9 MiB of data (over the host's 8 MiB output
//!   limit), `many` returns 5,000 events from any body.

use relay_sdk::{Source, SourceEvent, header, parse_options};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Options {
    mode: Option<String>,
    /// The event type of `ok` events.
    event_type: Option<String>,
}

pub struct TestSource {
    mode: String,
    event_type: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scan {
    scanner: String,
    findings: Vec<Finding>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Finding {
    id: String,
    title: String,
    severity: String,
}

impl Source for TestSource {
    fn create(options: &str) -> Result<Self, String> {
        let o: Options = parse_options(options)?;
        let mode = o.mode.unwrap_or_else(|| "ok".into());
        match mode.as_str() {
            "ok" | "loop" | "memory" | "trap" | "huge" | "big" | "many" => Ok(TestSource {
                mode,
                event_type: o.event_type.unwrap_or_else(|| "finding_added".into()),
            }),
            other => Err(format!("invalid options: mode: unknown mode {other:?}")),
        }
    }

    fn parse(&self, headers: &[(String, String)], body: &[u8]) -> Result<Vec<SourceEvent>, String> {
        match self.mode.as_str() {
            "loop" => {
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("the test source traps on purpose"),
            "huge" => Ok(vec![SourceEvent::new(
                "x",
                json!({"blob": "x".repeat(100 << 20)}),
            )]),
            "big" => Ok(vec![SourceEvent::new(
                "x",
                json!({"blob": "x".repeat(9 << 20)}),
            )]),
            "many" => Ok((0..5000)
                .map(|i| SourceEvent::new("x", json!({ "n": i })).with_id(format!("many-{i}")))
                .collect()),
            _ => {
                let scan: Scan =
                    serde_json::from_slice(body).map_err(|e| format!("not a scan report: {e}"))?;
                let content_type = header(headers, "content-type").map(str::to_owned);
                let saw_authorization = header(headers, "authorization").is_some();
                Ok(scan
                    .findings
                    .into_iter()
                    .map(|f| {
                        let data: Value = json!({
                            "title": f.title,
                            "severity": f.severity,
                            "scanner": scan.scanner,
                            "content_type": content_type,
                            "saw_authorization": saw_authorization,
                        });
                        SourceEvent::new(self.event_type.clone(), data)
                            .with_id(format!("{}:{}", scan.scanner, f.id))
                    })
                    .collect())
            }
        }
    }
}

relay_sdk::export_source!(TestSource);

#[cfg(test)]
mod tests {
    use relay_sdk::testing;

    #[test]
    fn a_scan_becomes_one_event_per_finding_with_the_scanners_ids() {
        let body = br#"{"scanner":"nmap","findings":[{"id":"1","title":"Open port","severity":"low"},{"id":"2","title":"Telnet","severity":"high"}]}"#;
        let events = testing::parse::<super::TestSource>(
            "{}",
            &[("Content-Type", "application/json")],
            body,
        )
        .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].id.as_deref(), Some("nmap:2"));
        assert_eq!(events[1].data["title"], "Telnet");
        assert_eq!(events[0].data["content_type"], "application/json");
    }

    #[test]
    fn another_shape_is_refused_and_unknown_modes_too() {
        let e = testing::parse::<super::TestSource>("{}", &[], b"{}").unwrap_err();
        assert!(e.contains("not a scan report"), "{e}");
        let e = testing::parse::<super::TestSource>(r#"{"mode":"nope"}"#, &[], b"{}").unwrap_err();
        assert!(e.contains("unknown mode"), "{e}");
    }
}
