//! Fuzz target: the `splunk_hec` destination's native code
//! (`plugins/splunk_hec`). Input and checks: `relay_fuzz::destination`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        relay_fuzz::destination::<relay_plugin_splunk_hec::SplunkHec>(data);
    });
}
