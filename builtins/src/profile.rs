/// The release profile plugins are built with, as `[profile.release]`
/// keys and TOML values: the built-ins (the build script passes each as
/// `CARGO_PROFILE_RELEASE_<KEY>` to its nested cargo) and the crates `relay
/// plugin new` writes. One codegen unit and whole-program LTO let LLVM
/// inline serde and the SDK into the exports: a warm slack format took
/// 0.94× the thread CPU time of the default profile (`cargo bench --bench
/// plugin`'s A/B mode); the plugins' build costs ~16 s more CPU. `panic`
/// stays at the wasm targets' default, which is already `abort`.
pub const PLUGIN_RELEASE_PROFILE: &[(&str, &str)] = &[("lto", "true"), ("codegen-units", "1")];
