//! The CEF extension keys this formatter accepts, with their value types and
//! length limits (ArcSight "Implementing ArcSight CEF", as also enforced by
//! the `cefevent` validator in strict mode).

/// The value type of an extension key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text of at most this many characters.
    Str(usize),
    /// A 32-bit signed integer.
    Int,
    /// A 64-bit signed integer.
    Long,
    /// A floating-point number.
    Float,
    /// A TCP/UDP port, 0–65535.
    Port,
    /// A dotted-quad IPv4 address.
    Ipv4,
    /// An IPv6 address.
    Ipv6,
    /// A MAC address, six hex pairs.
    Mac,
    /// A time, emitted as epoch milliseconds.
    Time,
    /// `deviceDirection`: 0 inbound, 1 outbound.
    Direction,
}

use Kind::*;

/// Every known extension key and its kind, sorted case-insensitively.
pub const KEYS: &[(&str, Kind)] = &[
    ("act", Str(63)),
    ("app", Str(31)),
    ("c6a1", Ipv6),
    ("c6a1Label", Str(1023)),
    ("c6a2", Ipv6),
    ("c6a2Label", Str(1023)),
    ("c6a3", Ipv6),
    ("c6a3Label", Str(1023)),
    ("c6a4", Ipv6),
    ("c6a4Label", Str(1023)),
    ("cat", Str(1023)),
    ("cfp1", Float),
    ("cfp1Label", Str(1023)),
    ("cfp2", Float),
    ("cfp2Label", Str(1023)),
    ("cfp3", Float),
    ("cfp3Label", Str(1023)),
    ("cfp4", Float),
    ("cfp4Label", Str(1023)),
    ("cn1", Long),
    ("cn1Label", Str(1023)),
    ("cn2", Long),
    ("cn2Label", Str(1023)),
    ("cn3", Long),
    ("cn3Label", Str(1023)),
    ("cnt", Int),
    ("cs1", Str(4000)),
    ("cs1Label", Str(1023)),
    ("cs2", Str(4000)),
    ("cs2Label", Str(1023)),
    ("cs3", Str(4000)),
    ("cs3Label", Str(1023)),
    ("cs4", Str(4000)),
    ("cs4Label", Str(1023)),
    ("cs5", Str(4000)),
    ("cs5Label", Str(1023)),
    ("cs6", Str(4000)),
    ("cs6Label", Str(1023)),
    ("destinationDnsDomain", Str(255)),
    ("destinationServiceName", Str(1023)),
    ("destinationTranslatedAddress", Ipv4),
    ("destinationTranslatedPort", Port),
    ("deviceCustomDate1", Time),
    ("deviceCustomDate1Label", Str(1023)),
    ("deviceCustomDate2", Time),
    ("deviceCustomDate2Label", Str(1023)),
    ("deviceDirection", Direction),
    ("deviceDnsDomain", Str(255)),
    ("deviceExternalId", Str(255)),
    ("deviceFacility", Str(1023)),
    ("deviceInboundInterface", Str(128)),
    ("deviceMacAddress", Mac),
    ("deviceNtDomain", Str(255)),
    ("deviceOutboundInterface", Str(128)),
    ("deviceProcessName", Str(1023)),
    ("deviceTranslatedAddress", Ipv4),
    ("dhost", Str(1023)),
    ("dmac", Mac),
    ("dntdom", Str(255)),
    ("dpid", Int),
    ("dpriv", Str(1023)),
    ("dproc", Str(1023)),
    ("dpt", Port),
    ("dst", Ipv4),
    ("dtz", Str(255)),
    ("duid", Str(1023)),
    ("duser", Str(1023)),
    ("dvc", Ipv4),
    ("dvchost", Str(100)),
    ("dvcpid", Int),
    ("end", Time),
    ("externalId", Str(40)),
    ("fileCreateTime", Time),
    ("fileHash", Str(255)),
    ("fileId", Str(1023)),
    ("fileModificationTime", Time),
    ("filePath", Str(1023)),
    ("filePermission", Str(1023)),
    ("fileType", Str(1023)),
    ("flexDate1", Time),
    ("flexDate1Label", Str(128)),
    ("flexString1", Str(1023)),
    ("flexString1Label", Str(128)),
    ("flexString2", Str(1023)),
    ("flexString2Label", Str(128)),
    ("fname", Str(1023)),
    ("fsize", Int),
    ("in", Long),
    ("msg", Str(1023)),
    ("oldFileCreateTime", Time),
    ("oldFileHash", Str(255)),
    ("oldFileId", Str(1023)),
    ("oldFileModificationTime", Time),
    ("oldFileName", Str(1023)),
    ("oldFilePath", Str(1023)),
    ("oldFilePermission", Str(1023)),
    ("oldFileSize", Int),
    ("oldFileType", Str(1023)),
    ("out", Long),
    ("proto", Str(31)),
    ("reason", Str(1023)),
    ("request", Str(1023)),
    ("requestClientApplication", Str(1023)),
    ("requestCookies", Str(1023)),
    ("requestMethod", Str(1023)),
    ("rt", Time),
    ("shost", Str(1023)),
    ("smac", Mac),
    ("sntdom", Str(255)),
    ("sourceDnsDomain", Str(255)),
    ("sourceServiceName", Str(1023)),
    ("sourceTranslatedAddress", Ipv4),
    ("sourceTranslatedPort", Port),
    ("spid", Int),
    ("spriv", Str(1023)),
    ("spt", Port),
    ("src", Ipv4),
    ("start", Time),
    ("suid", Str(1023)),
    ("suser", Str(1023)),
];

/// The kind of a known extension key.
pub fn kind(key: &str) -> Option<Kind> {
    KEYS.iter().find(|(k, _)| *k == key).map(|(_, kind)| *kind)
}

/// The label key (`cs1Label`) of a custom field (`cs1`), if it has one.
pub fn label_key(key: &str) -> Option<String> {
    let label = format!("{key}Label");
    kind(&label).is_some().then_some(label)
}

/// Whether `key` is itself a label key.
pub fn is_label(key: &str) -> bool {
    key.ends_with("Label") && kind(key).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for pair in KEYS.windows(2) {
            assert!(
                pair[0].0.to_lowercase() < pair[1].0.to_lowercase(),
                "{} / {}",
                pair[0].0,
                pair[1].0
            );
        }
    }

    #[test]
    fn labels() {
        assert_eq!(label_key("cs1").as_deref(), Some("cs1Label"));
        assert_eq!(
            label_key("deviceCustomDate2").as_deref(),
            Some("deviceCustomDate2Label")
        );
        assert_eq!(label_key("msg"), None);
        assert!(is_label("cn3Label"));
        assert!(!is_label("msg"));
        assert_eq!(kind("externalId"), Some(Str(40)));
        assert_eq!(kind("nope"), None);
    }
}
