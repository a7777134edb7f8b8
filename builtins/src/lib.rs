//! The built-in plugins (`plugins/*`), built for `wasm32-wasip2` by this
//! crate's build script and embedded as component bytes.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
// Shared with the build script, which `include!`s it too.
include!("profile.rs");

/// Where the build script left every plugin it built, the test fixtures
/// (`tests/plugins/*`) included.
pub const WASM_DIR: &str = env!("RELAY_WASM_DIR");
