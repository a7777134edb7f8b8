//! Builds the built-in plugins (`plugins/*`) and the test fixture plugins
//! (`tests/plugins/*`) for `wasm32-wasip2`, and embeds the built-ins
//! (`BUILTINS`, which the relay's plugin host loads).
//!
//! The nested cargo runs with its own `--target-dir` (the outer build holds
//! the lock on ours) and without the outer build's RUSTFLAGS, so the plugins
//! are built the same way whatever the host profile is: release, with
//! `PLUGIN_RELEASE_PROFILE` (`src/profile.rs`: LTO, one codegen unit).

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

// `PLUGIN_RELEASE_PROFILE`, which the crate exports for `relay plugin new`.
include!("src/profile.rs");

struct PluginCrate {
    package: String,
    name: String,
    kind: String,
    builtin: bool,
}

fn read_crate(dir: &Path, builtin: bool) -> Option<PluginCrate> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    let mut package = None;
    let mut name = None;
    let mut kind = None;
    let mut section = String::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_owned();
        match (section.as_str(), key.trim()) {
            ("[package]", "name") => package = Some(value),
            ("[package.metadata.relay]", "plugin") => name = Some(value),
            ("[package.metadata.relay]", "kind") => kind = Some(value),
            _ => {}
        }
    }
    Some(PluginCrate {
        package: package?,
        name: name?,
        kind: kind?,
        builtin,
    })
}

fn crates_in(dir: &Path, builtin: bool) -> Vec<PluginCrate> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    for d in dirs {
        if let Some(c) = read_crate(&d, builtin) {
            out.push(c);
        }
    }
    out
}

fn ensure_target() {
    let listed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match listed {
        Ok(o)
            if String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2") => {}
        Ok(_) => {
            let status = Command::new("rustup")
                .args(["target", "add", "wasm32-wasip2"])
                .status();
            if !matches!(status, Ok(s) if s.success()) {
                panic!(
                    "the wasm32-wasip2 target is missing and `rustup target add wasm32-wasip2` failed; install it and build again"
                );
            }
        }
        Err(_) => println!(
            "cargo:warning=rustup not found: make sure the wasm32-wasip2 target is installed for this toolchain"
        ),
    }
}

fn main() {
    // This crate sits in `builtins/` of the workspace.
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("the workspace root").to_owned();
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    for watched in ["plugins", "sdk", "tests/plugins"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let mut crates = crates_in(&root.join("plugins"), true);
    crates.extend(crates_in(&root.join("tests/plugins"), false));

    ensure_target();
    let target_dir = out.join("wasm-target");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for c in &crates {
        cmd.args(["-p", &c.package]);
    }
    for (key, value) in PLUGIN_RELEASE_PROFILE {
        let var = format!(
            "CARGO_PROFILE_RELEASE_{}",
            key.to_ascii_uppercase().replace('-', "_")
        );
        cmd.env(var, value);
    }
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo to build the wasm plugins");
    assert!(
        status.success(),
        "building the wasm plugins failed (see the output above)"
    );

    let wasm_dir = target_dir.join("wasm32-wasip2").join("release");
    let mut code = String::from(
        "/// Built-in plugins: (name, kind, component bytes).\npub static BUILTINS: &[(&str, &str, &[u8])] = &[\n",
    );
    for c in crates.iter().filter(|c| c.builtin) {
        let file = wasm_dir.join(format!("{}.wasm", c.package.replace('-', "_")));
        assert!(file.exists(), "{} was not built", file.display());
        let _ = writeln!(
            code,
            "    ({:?}, {:?}, include_bytes!({:?})),",
            c.name,
            c.kind,
            file.display().to_string()
        );
    }
    code.push_str("];\n");
    std::fs::write(out.join("builtin_plugins.rs"), code).expect("write builtin_plugins.rs");
    // Tests find the fixture plugins here.
    println!("cargo:rustc-env=RELAY_WASM_DIR={}", wasm_dir.display());
}
