//! Fuzz target: the `cef` formatter's native code (`plugins/cef`).
//! Input: `relay_fuzz::formatter`. Checked: one line (no CR/LF anywhere),
//! starting `CEF:0|`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Some(p) = relay_fuzz::formatter::<relay_plugin_cef::Cef>(data) {
            let line = String::from_utf8_lossy(&p.body);
            assert!(line.starts_with("CEF:0|"), "{line:?}");
            assert!(
                !line.contains(['\n', '\r']),
                "a CEF line spans lines: {line:?}"
            );
        }
    });
}
