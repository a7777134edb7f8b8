//! Fuzz target: `relay::ingest::parse` (the §5 rules) on arbitrary bytes,
//! without and with an event-type catalogue.
//! Checked: an accepted event's time is one the plugins' RFC 3339 parser
//! (`relay_sdk::time`) reads too, else `cef`/`syslog` fail its deliveries.

use std::collections::BTreeMap;

fn main() {
    let catalogue: BTreeMap<String, String> = [
        ("finding_added", "a new finding"),
        ("scan.completed", "a scan finished"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    afl::fuzz!(|data: &[u8]| {
        let open = relay::ingest::parse(data, None, 100);
        let declared = relay::ingest::parse(data, Some(&catalogue), 100);
        if declared.is_ok() {
            assert!(open.is_ok(), "accepted with a catalogue, refused without");
        }
        for event in open.iter().flatten() {
            assert!(
                relay_sdk::time::Timestamp::parse_rfc3339(&event.time).is_ok(),
                "ingest accepted time {:?} that plugins cannot read",
                event.time
            );
        }
    });
}
