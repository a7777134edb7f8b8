//! Fuzz target: the `teams` formatter's native code (`plugins/teams`).
//! Input and checks: `relay_fuzz::formatter`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        relay_fuzz::formatter::<relay_plugin_teams::Teams>(data);
    });
}
