//! A destination that builds more than it should, chosen by its `mode`
//! option, so the host's checks of `build` output can be tested: `many`
//! returns `count` requests to the webhook URL, `elsewhere` returns one
//! request to the `url` option instead of the webhook URL, `ok` returns one
//! request to the webhook URL. Every 2xx is a success, anything else fails.

use relay_sdk::{Destination, Outcome, Payload, Request, Response, Target, parse_options};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    mode: String,
    #[serde(default)]
    count: usize,
    #[serde(default)]
    url: String,
}

pub struct HostileDest(Options);

impl Destination for HostileDest {
    fn create(options: &str) -> Result<Self, String> {
        let o: Options = parse_options(options)?;
        match o.mode.as_str() {
            "ok" | "many" | "elsewhere" => Ok(HostileDest(o)),
            other => Err(format!("invalid options: mode: unknown mode {other:?}")),
        }
    }

    fn build(&self, payload: &Payload, target: &Target) -> Result<Vec<Request>, String> {
        let request = |url: &str, i: usize| {
            Request::post(url.to_owned())
                .header("Content-Type", payload.content_type.clone())
                .header("X-Request-Index", i.to_string())
                .body(payload.body.clone())
        };
        Ok(match self.0.mode.as_str() {
            "many" => (0..self.0.count).map(|i| request(&target.url, i)).collect(),
            "elsewhere" => vec![request(&self.0.url, 0)],
            _ => vec![request(&target.url, 0)],
        })
    }

    fn classify(&self, response: &Response) -> Outcome {
        if (200..300).contains(&response.status) {
            Outcome::Success
        } else {
            Outcome::Fail(format!("HTTP {}", response.status))
        }
    }
}

relay_sdk::export_destination!(HostileDest);
