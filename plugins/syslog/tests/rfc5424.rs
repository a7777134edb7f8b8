//! Every header field, SD param and the MSG parse back intact with the
//! strict `syslog_rfc5424` parser, including hostile values.

use relay_plugin_syslog::{SD_PARAMS_MAX, SD_VALUE_MAX, Syslog};
use relay_sdk::testing;
use relay_sdk::text::truncate;
use serde_json::{Map, Value, json};
use syslog_rfc5424::message::ProcId;
use syslog_rfc5424::{SyslogFacility, SyslogSeverity, parse_message};

const HOSTILE: &str = "q\"uote\\back]slash] [x=\"y\"] = \u{0}\u{7}\nline\r🦀é\u{feff}-";

fn message(options: &str, event: &relay_sdk::Event) -> String {
    let payload = testing::format::<Syslog>(options, event).expect("format");
    String::from_utf8(payload.body).expect("utf-8")
}

#[test]
fn ordinary_event_round_trips() {
    let mut event = testing::event(
        json!({"title": "SQL injection in /login", "severity": "high",
        "tenant_name": "Acme", "cvss": 9.8, "fixed": false, "nested": {"x": 1}, "none": null}),
    );
    event.time = "2026-11-22T10:00:00.250-05:00".into();
    let m = message(
        r#"{"facility":"auth","hostname":"relay-01.example","app_name":"relay","procid":"4242","sd_id":"acme@32473"}"#,
        &event,
    );
    let p = parse_message(&m).unwrap_or_else(|e| panic!("{e:?}: {m}"));
    assert_eq!(p.facility, SyslogFacility::LOG_AUTH);
    assert_eq!(p.severity, SyslogSeverity::SEV_ERR);
    assert_eq!(p.version, 1);
    assert_eq!(p.timestamp, Some(1_795_359_600));
    assert_eq!(p.timestamp_nanos, Some(250_000_000));
    assert_eq!(p.hostname.as_deref(), Some("relay-01.example"));
    assert_eq!(p.appname.as_deref(), Some("relay"));
    assert_eq!(p.procid, Some(ProcId::PID(4242)));
    assert_eq!(p.msgid.as_deref(), Some("finding_added"));
    assert_eq!(p.msg, "\u{feff}SQL injection in /login");
    let sd = p.sd.find_sdid("acme@32473").expect("sd element");
    let expected: Vec<(&str, &str)> = vec![
        ("cvss", "9.8"),
        ("event_id", testing::EVENT_ID),
        ("fixed", "false"),
        ("severity", "high"),
        ("tenant_name", "Acme"),
        ("title", "SQL injection in /login"),
    ];
    let got: Vec<(&str, &str)> = sd.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got, expected);
}

#[test]
fn defaults_use_nilvalues() {
    let m = message("", &testing::event(json!({})));
    let p = parse_message(&m).unwrap_or_else(|e| panic!("{e:?}: {m}"));
    assert_eq!(p.facility, SyslogFacility::LOG_LOCAL0);
    assert_eq!(p.severity, SyslogSeverity::SEV_INFO);
    assert_eq!(p.hostname, None);
    assert_eq!(p.procid, None);
    assert_eq!(p.appname.as_deref(), Some("relay"));
    assert_eq!(p.msg, format!("\u{feff}{}", testing::EVENT_TYPE));
    assert!(
        m.contains(" - relay - finding_added [relay@32473 event_id="),
        "{m}"
    );
}

#[test]
fn hostile_values_round_trip() {
    let mut data = Map::new();
    data.insert("title".into(), json!(HOSTILE));
    data.insert("severity".into(), json!("critical"));
    data.insert("plain".into(), json!(HOSTILE));
    data.insert("long".into(), json!(HOSTILE.repeat(200)));
    data.insert("k=e]y\"with space".into(), json!("v"));
    data.insert(format!("very_long_key_{}", "z".repeat(100)), json!("w"));
    let mut event = testing::event_of(
        "type.with:odd-chars_and_a_very_long_name_over_32",
        Value::Object(data),
    );
    event.id = format!("id with \"quotes\" ] and spaces {HOSTILE}");
    let m = message("", &event);
    let p = parse_message(&m).unwrap_or_else(|e| panic!("{e:?}: {m}"));

    assert_eq!(p.severity, SyslogSeverity::SEV_CRIT);
    assert_eq!(p.msgid.as_deref(), Some("type.with:odd-chars_and_a_very_l"));
    assert_eq!(p.msg, format!("\u{feff}{HOSTILE}"));
    let sd = p.sd.find_sdid("relay@32473").expect("sd element");
    assert_eq!(
        sd.get("event_id").map(String::as_str),
        Some(event.id.as_str())
    );
    assert_eq!(sd.get("plain").map(String::as_str), Some(HOSTILE));
    assert_eq!(sd.get("title").map(String::as_str), Some(HOSTILE));
    let long = truncate(&HOSTILE.repeat(200), SD_VALUE_MAX);
    assert_eq!(sd.get("long"), Some(&long));
    assert_eq!(sd.get("k_e_y_with_space").map(String::as_str), Some("v"));
    let long_key = format!("very_long_key_{}", "z".repeat(18));
    assert_eq!(sd.get(&long_key).map(String::as_str), Some("w"));
}

#[test]
fn many_fields_are_capped() {
    let mut data = Map::new();
    for i in 0..500 {
        data.insert(format!("f{i:03}"), json!("x".repeat(2000)));
    }
    let m = message("", &testing::event(Value::Object(data)));
    assert!(m.len() < 64 * 1024, "{} bytes", m.len());
    let p = parse_message(&m).unwrap_or_else(|e| panic!("{e:?}"));
    let sd = p.sd.find_sdid("relay@32473").expect("sd element");
    assert!(sd.len() <= SD_PARAMS_MAX);
    assert!(sd.len() > 5);
    for (k, v) in sd.iter().filter(|(k, _)| k.as_str() != "event_id") {
        assert_eq!(v, &truncate(&"x".repeat(2000), SD_VALUE_MAX), "{k}");
    }
}

#[test]
fn every_header_field_is_print_us_ascii() {
    let event = testing::event_of("tÿpe with spaces\u{0}", json!({"title": "t"}));
    let m = message(r#"{"hostname":"h","procid":"p-1"}"#, &event);
    let header: Vec<&str> = m.splitn(8, ' ').collect();
    for field in &header[2..6] {
        assert!(field.bytes().all(|b| (33..=126).contains(&b)), "{field:?}");
    }
    assert_eq!(header[5], "t_pe_with_spaces_");
    let p = parse_message(&m).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.procid, Some(ProcId::Name("p-1".into())));
}
