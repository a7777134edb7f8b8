//! Runs the third-party validators in `tests/validators/` from plugin tests.
//!
//! Included by the plugin crates' integration tests with
//! `#[path = "../../../tests/validators/harness.rs"] mod harness;`.
//! A missing interpreter or validator package FAILS the test with the
//! command to run; it never passes silently.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Exit code the validator scripts use when their package is not installed.
const MISSING: i32 = 3;

/// `tests/validators/` in the repository.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/validators")
}

/// Runs `python3 <script>` (or `$RELAY_PYTHON`), feeding `input` on stdin.
pub fn python(script: &str, input: &str) -> String {
    let python = std::env::var("RELAY_PYTHON").unwrap_or_else(|_| "python3".to_string());
    run(&python, script, input)
}

/// Runs `node <script>` (or `$RELAY_NODE`), feeding `input` on stdin.
pub fn node(script: &str, input: &str) -> String {
    let node = std::env::var("RELAY_NODE").unwrap_or_else(|_| "node".to_string());
    run(&node, script, input)
}

/// Runs `python3 <script>` on `input` that it must refuse (exit 1): returns
/// its report (stderr), which names each refused line and why. Passing
/// everything, or a missing package, fails the test.
pub fn python_refuses(script: &str, input: &str) -> String {
    let python = std::env::var("RELAY_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let out = spawn(&python, script, input);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(1) => stderr,
        Some(MISSING) => panic!(
            "validator {script} is not installed: {stderr}\nrun `bash tests/validators/install.sh`"
        ),
        _ => panic!(
            "validator {script} should have refused the input but exited with {}:\n{}",
            out.status,
            clip(&stderr)
        ),
    }
}

fn run(program: &str, script: &str, input: &str) -> String {
    let out = spawn(program, script, input);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => stdout,
        Some(MISSING) => panic!(
            "validator {script} is not installed: {stderr}\nrun `bash tests/validators/install.sh`"
        ),
        _ => panic!(
            "validator {script} rejected the output ({}):\n{}\n{}",
            out.status,
            clip(&stdout),
            clip(&stderr)
        ),
    }
}

fn spawn(program: &str, script: &str, input: &str) -> std::process::Output {
    let script_path = dir().join(script);
    let mut child = Command::new(program)
        .arg(&script_path)
        .current_dir(dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{program}` for validator {script} ({e}); install it, then run \
                 tests/validators/install.sh"
            )
        });
    // Feed stdin from a thread so a chatty validator cannot deadlock us. A
    // write error (the script exited early, e.g. its package is missing) is
    // ignored: the exit status below says what happened.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("wait for validator");
    let _ = writer.join();
    out
}

/// The first few KB of a validator's report.
fn clip(text: &str) -> &str {
    let mut end = text.len().min(8_000);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
