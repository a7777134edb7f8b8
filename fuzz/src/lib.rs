//! What the fuzz targets share: splitting one fuzz input into text fields,
//! and the harnesses for the plugin traits, so each `src/bin/*.rs` target is
//! a line or two.
//!
//! Owns: how a fuzz input maps onto a call, and the properties checked on
//! what comes back (beyond "no panic"). A property that fails panics, which
//! AFL++ records as a crash like any other.

use relay_sdk::{Destination, Event, Formatter, Response, Target};

/// Splits `data` at NUL bytes into exactly `n` text fields (lossy UTF-8;
/// missing fields are empty, the last field keeps any further NULs).
pub fn fields(data: &[u8], n: usize) -> Vec<String> {
    let mut out: Vec<String> = data
        .splitn(n, |&b| b == 0)
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect();
    out.resize(n, String::new());
    out
}

/// A formatter as the relay calls it: `create(options)`, then `format` of an
/// event whose data crossed as JSON text.
///
/// Input: `options \0 id \0 type \0 time \0 data-json`.
/// Checked: a payload whose content type says JSON is valid JSON (the host
/// would refuse it otherwise, failing every such delivery).
pub fn formatter<F: Formatter>(data: &[u8]) -> Option<relay_sdk::Payload> {
    let f = fields(data, 5);
    let formatter = F::create(&f[0]).ok()?;
    let event = Event::from_parts(&*f[1], &*f[2], &*f[3], &f[4]).ok()?;
    let payload = formatter.format(&event).ok()?;
    if payload.content_type.contains("json") {
        assert!(
            serde_json::from_slice::<serde_json::Value>(&payload.body).is_ok(),
            "a {} payload is not JSON: {:?}",
            payload.content_type,
            String::from_utf8_lossy(&payload.body)
        );
    }
    Some(payload)
}

/// A destination as the relay calls it: `create(options)`, `build` for one
/// payload and target, and `classify` of one response.
///
/// Input: `options \0 payload content type \0 payload body \0 url \0
/// "Name: value" header lines \0 response status \0 response body`; the
/// header lines serve as the target's headers and the response's.
/// Checked: every request goes to a non-empty URL with an upper-case method.
pub fn destination<D: Destination>(data: &[u8]) {
    let f = fields(data, 7);
    let Ok(dest) = D::create(&f[0]) else {
        return;
    };
    let headers: Vec<(String, String)> = f[4]
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let payload = relay_sdk::Payload::new(f[1].clone(), f[2].as_bytes().to_vec());
    let target = Target {
        url: f[3].clone(),
        method: "POST".into(),
        headers: headers.clone(),
    };
    if let Ok(requests) = dest.build(&payload, &target) {
        for r in &requests {
            assert!(!r.url.is_empty(), "a request without a URL: {r:?}");
            assert_eq!(r.method, r.method.to_ascii_uppercase(), "{r:?}");
        }
    }
    let status = f[5].trim().parse::<u16>().unwrap_or(200);
    let response = Response {
        status,
        headers,
        body: f[6].as_bytes().to_vec(),
    };
    let _ = dest.classify(&response);
}
