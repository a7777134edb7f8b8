//! Fuzz target: `relay::check::parse` (relay.yaml: `Config::parse` and the
//! checks that need other modules) on arbitrary text.
//!
//! Validation reads two things from disk: `network.ca_file` and the listing
//! of `plugins.dir`. The target runs in a temp directory holding a `ca.pem`
//! (a real certificate), a `bad.pem` (not one) and a `plugins/` dir, and
//! skips inputs whose `ca_file` or `plugins.dir` names anything else, so it
//! never reads /dev/zero or a changing directory.

use std::path::Path;

use relay::check;
use relay::config::Config;

const ALLOWED_FILES: &[&str] = &["ca.pem", "bad.pem", "missing.pem"];
const ALLOWED_DIRS: &[&str] = &["./plugins", "plugins", "missing"];

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("ca.pem"),
        include_str!("../../fixtures/ca.pem"),
    )
    .expect("ca.pem");
    std::fs::write(dir.path().join("bad.pem"), "not a certificate\n").expect("bad.pem");
    std::fs::create_dir(dir.path().join("plugins")).expect("plugins dir");
    std::env::set_current_dir(dir.path()).expect("cd");
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(cfg) = serde_saphyr::from_str::<Config>(text) {
            let file_ok = cfg
                .network
                .ca_file
                .as_ref()
                .is_none_or(|p| ALLOWED_FILES.iter().any(|a| p.0 == Path::new(a)));
            let dir_ok = ALLOWED_DIRS
                .iter()
                .any(|a| cfg.plugins.dir.0 == Path::new(a));
            if !(file_ok && dir_ok) {
                return;
            }
        }
        let _ = check::parse(text, "relay.yaml");
    });
    drop(dir);
}
