//! Fuzz target: the `slack` destination's native code (`plugins/slack_dest`).
//! Input and checks: `relay_fuzz::destination`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        relay_fuzz::destination::<relay_plugin_slack_dest::SlackDestination>(data);
    });
}
