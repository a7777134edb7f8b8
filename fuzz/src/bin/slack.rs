//! Fuzz target: the `slack` formatter's native code (`plugins/slack`).
//! Input and checks: `relay_fuzz::formatter`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        relay_fuzz::formatter::<relay_plugin_slack::Slack>(data);
    });
}
