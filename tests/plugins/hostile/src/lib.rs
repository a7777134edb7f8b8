//! A formatter that misbehaves on purpose, chosen by its `mode` option, so
//! the host's sandbox can be tested: `loop` never returns, `memory` grows
//! memory without bound, `trap` panics (a wasm trap), `huge` returns a
//! 100 MiB body, `garbage` returns a body that is not the JSON it claims,
//! `ok` behaves (it echoes the event id and a `version` option).

use relay_sdk::{Event, Formatter, Payload, parse_options};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    mode: String,
    #[serde(default)]
    version: String,
}

pub struct Hostile(Options);

impl Formatter for Hostile {
    fn create(options: &str) -> Result<Self, String> {
        let o: Options = parse_options(options)?;
        match o.mode.as_str() {
            "ok" | "loop" | "memory" | "trap" | "huge" | "garbage" => Ok(Hostile(o)),
            other => Err(format!("invalid options: mode: unknown mode {other:?}")),
        }
    }

    fn format(&self, event: &Event) -> Result<Payload, String> {
        match self.0.mode.as_str() {
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
            "trap" => panic!("hostile plugin traps on purpose"),
            "huge" => Ok(Payload {
                content_type: "text/plain".into(),
                body: vec![b'x'; 100 << 20],
            }),
            "garbage" => Ok(Payload {
                content_type: "application/json".into(),
                body: vec![0xff, 0xfe, b'{', 0],
            }),
            _ => Ok(Payload {
                content_type: "application/json".into(),
                body: serde_json::to_vec(
                    &serde_json::json!({"id": event.id, "version": self.0.version}),
                )
                .map_err(|e| e.to_string())?,
            }),
        }
    }
}

relay_sdk::export_formatter!(Hostile);
