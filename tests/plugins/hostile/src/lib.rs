//! A formatter that misbehaves on purpose, chosen by its `mode` option, so
//! the host's sandbox can be tested: `loop` never returns, `memory` grows
//! memory without bound, `trap` panics (a wasm trap), `huge` returns a
//! 100 MiB body, `big` returns a body one byte over the host's 8 MiB output
//! limit (small enough for a 64 MiB memory cap), `garbage` returns a body
//! that is not the JSON it claims, `sleep` sleeps 100,000 s in `format` and
//! `sleep_create` in `create` (both wait in WASI, not in guest code),
//! `clock` reports what the clocks tell it, `ok` behaves (it echoes the
//! event id and a `version` option).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use relay_sdk::{Event, Formatter, Payload, parse_options};
use serde::Deserialize;

/// The host's `MAX_OUTPUT_BYTES`.
const HOST_OUTPUT_LIMIT: usize = 8 * 1024 * 1024;
/// Longer than any test waits.
const LONG_SLEEP: Duration = Duration::from_secs(100_000);

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
            "ok" | "loop" | "memory" | "trap" | "huge" | "big" | "garbage" | "sleep" | "clock" => {
                Ok(Hostile(o))
            }
            "sleep_create" => {
                std::thread::sleep(LONG_SLEEP);
                Ok(Hostile(o))
            }
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
            "big" => Ok(Payload {
                content_type: "text/plain".into(),
                body: vec![b'x'; HOST_OUTPUT_LIMIT + 1],
            }),
            "sleep" => {
                std::thread::sleep(LONG_SLEEP);
                Err("woke up".into())
            }
            "clock" => {
                // The wall clock, and how far the monotonic clock moves
                // across a 20 ms sleep.
                let wall = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                let start = Instant::now();
                std::thread::sleep(Duration::from_millis(20));
                let moved = start.elapsed().as_nanos() as u64;
                Ok(Payload {
                    content_type: "application/json".into(),
                    body: serde_json::to_vec(
                        &serde_json::json!({"wall_ns": wall, "monotonic_moved_ns": moved}),
                    )
                    .map_err(|e| e.to_string())?,
                })
            }
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
