//! Fuzz target: the `syslog` formatter's native code (`plugins/syslog`).
//! Input: `relay_fuzz::formatter`. Checked: `<PRI>1 ` with PRI ≤ 191 and a
//! header (up to the SD) of printable US-ASCII only.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Some(p) = relay_fuzz::formatter::<relay_plugin_syslog::Syslog>(data) {
            let msg = String::from_utf8_lossy(&p.body);
            let pri = msg
                .strip_prefix('<')
                .and_then(|m| m.split_once(">1 "))
                .and_then(|(pri, _)| pri.parse::<u16>().ok());
            assert!(pri.is_some_and(|p| p <= 191), "bad PRI/version: {msg:?}");
            // TIMESTAMP HOSTNAME APP-NAME PROCID MSGID: five fields after "1".
            let header: Vec<&str> = msg.splitn(7, ' ').take(6).collect();
            assert_eq!(header.len(), 6, "short header: {msg:?}");
            for field in &header[1..] {
                assert!(
                    !field.is_empty() && field.bytes().all(|b| (33..=126).contains(&b)),
                    "header field {field:?} is not PRINTUSASCII: {msg:?}"
                );
            }
        }
    });
}
