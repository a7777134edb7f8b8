/// The release profile plugins are built with, as `[profile.release]`
/// keys and TOML values: the built-ins (the build script passes each as
/// `CARGO_PROFILE_RELEASE_<KEY>` to its nested cargo) and the crates `relay
/// plugin new` writes. One codegen unit and whole-program LTO let LLVM
/// inline serde and the SDK into the exports: a warm slack format took
/// 0.94× the thread CPU time of the default profile (`cargo bench --bench
/// plugin`'s A/B mode); the plugins' build costs ~16 s more CPU. `panic`
/// stays at the wasm targets' default, which is already `abort`.
///
/// Measured with the bench's A/B mode (`PLUGIN_BENCH_AB`, slack warm
/// against native + decode, alternating runs) and not taken: the `talc`
/// allocator in the SDK instead of wasi-libc's dlmalloc (7 runs:
/// 2.77–2.87× → 2.72–2.84×, ~2 %, for a global allocator every plugin
/// would inherit), `-C target-feature=+simd128` (2 runs: 2.79, 2.87× →
/// 2.84, 2.82×), `-C target-feature=-bulk-memory` (2 runs: no change),
/// and serde_json's string escaping skipping 8 bytes at a time (2 runs:
/// 2.79, 2.81× → 2.86, 2.92×: the strings a formatter writes are short;
/// the cost shown as `serialize_str` is mostly the writes), and (stop 35)
/// `-C llvm-args=-inline-threshold=2000` for the slack formatter (one A/B
/// of 11 alternating rounds: 2.87× → 2.84×).
pub const PLUGIN_RELEASE_PROFILE: &[(&str, &str)] = &[("lto", "true"), ("codegen-units", "1")];
