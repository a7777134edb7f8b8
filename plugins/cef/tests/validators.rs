//! CEF output checked two ways: a strict test-side parser applying the
//! spec's unescaping (values must round-trip), and PyPI `cefevent` in strict
//! mode (keys, types, lengths), which must parse the same fields.
//! Needs `bash tests/validators/install.sh`; fails (never skips) without it.

#[path = "../../../tests/validators/harness.rs"]
mod harness;

use relay_plugin_cef::Cef;
use relay_sdk::testing;
use relay_sdk::text::{char_len, truncate};
use serde_json::{Map, Value, json};

/// A parsed CEF line: the six header fields after `CEF:0` and the extensions.
#[derive(Debug, PartialEq, serde::Deserialize)]
struct Parsed {
    header: Vec<String>,
    extensions: Vec<(String, String)>,
}

impl Parsed {
    fn ext(&self, key: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Strict CEF parser (ArcSight CEF spec): header fields split on unescaped
/// `|` (escapes `\|`, `\\`); extension pairs split at unescaped `=`, the key
/// being the identifier after the last unescaped space (escapes `\=`, `\\`,
/// `\n`, `\r`). Any other escape, a raw line break or a bad key is an error.
fn parse(line: &str) -> Result<Parsed, String> {
    let rest = line.strip_prefix("CEF:0|").ok_or("no CEF:0| prefix")?;
    if line.contains(['\n', '\r']) {
        return Err("raw line break".into());
    }
    let mut chars = rest.chars();
    let mut header = Vec::new();
    let mut cur = String::new();
    while header.len() < 6 {
        match chars.next().ok_or("header ends early")? {
            '\\' => match chars.next() {
                Some(c @ ('\\' | '|')) => cur.push(c),
                other => return Err(format!("bad header escape {other:?}")),
            },
            '|' => header.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }

    let mut extensions = Vec::new();
    let mut key: Option<String> = None;
    let mut buf: Vec<(char, bool)> = Vec::new(); // (char, was escaped)
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let decoded = match chars.next() {
                    Some('\\') => '\\',
                    Some('=') => '=',
                    Some('n') => '\n',
                    Some('r') => '\r',
                    other => return Err(format!("bad extension escape {other:?}")),
                };
                buf.push((decoded, true));
            }
            '=' => {
                let start = buf
                    .iter()
                    .rposition(|&(c, esc)| c == ' ' && !esc)
                    .map_or(0, |i| i + 1);
                let name: String = buf[start..].iter().map(|&(c, _)| c).collect();
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("bad key {name:?}"));
                }
                match key.take() {
                    None if start != 0 => return Err("text before the first key".into()),
                    None => {}
                    Some(_) if start == 0 => return Err(format!("no space before key {name}")),
                    Some(k) => {
                        extensions.push((k, buf[..start - 1].iter().map(|&(c, _)| c).collect()))
                    }
                }
                key = Some(name);
                buf.clear();
            }
            c => buf.push((c, false)),
        }
    }
    match key {
        Some(k) => extensions.push((k, buf.iter().map(|&(c, _)| c).collect())),
        None if buf.is_empty() => {}
        None => return Err("extension text without a key".into()),
    }
    Ok(Parsed { header, extensions })
}

fn line(options: &str, data: Value) -> String {
    let payload = testing::format::<Cef>(options, &testing::event(data)).expect("format");
    String::from_utf8(payload.body).expect("utf-8")
}

const MAPPING: &str = r#"{"vendor":"Ven|dor\\","product":"Pro=duct","version":"1.0",
    "signature_id_field":"rule",
    "mapping":{"msg":"description","suser":"user","duser":"target.user","src":"ip","dst":"dst",
        "dhost":"host","shost":"source_host","request":"url","cs1":"tenant_name","cs2":"tags",
        "cs3":"nested","cn1":"count","cfp1":"score","spt":"port","smac":"mac","c6a1":"ip6",
        "start":"first_seen","act":"action","deviceDirection":"direction"},
    "labels":{"cs1":"Tenant","cs2":"Tags","cn1":"Count","cs3":"Nested \\ = | label"}}"#;

const HOSTILE: &str =
    "a=b c\\d \\= \\n literal, real\nnewline\rCR | pipe  msg=injected cs1=x \u{0}\u{1}🦀é";

fn ordinary() -> Value {
    json!({"title": "SQL injection in /login", "severity": "critical", "rule": "R-1",
        "description": "Union-based SQLi on id=1", "user": "alice", "target": {"user": "bob"},
        "ip": "10.0.0.1", "dst": "192.168.1.20", "host": "db01", "source_host": "web01",
        "url": "https://app/login?id=1", "tenant_name": "Acme", "tags": ["sqli", "owasp"],
        "nested": {"a": {"b": 1}}, "count": 3, "score": 9.8, "port": 443,
        "mac": "AA-BB-CC-DD-EE-FF", "ip6": "2001:db8::1", "first_seen": "2026-11-22T09:59:00.250Z",
        "action": "blocked", "direction": "inbound"})
}

fn hostile() -> Value {
    let mut data = Map::new();
    data.insert("title".into(), json!(HOSTILE.repeat(200)));
    data.insert("rule".into(), json!(format!("|{HOSTILE}|")));
    data.insert("severity".into(), json!(1e300));
    for key in [
        "description",
        "user",
        "host",
        "source_host",
        "url",
        "tenant_name",
        "action",
    ] {
        data.insert(key.into(), json!(HOSTILE.repeat(500)));
    }
    data.insert("target".into(), json!({"user": format!("  {HOSTILE}  ")}));
    data.insert("ip".into(), json!("999.1.1.1"));
    data.insert("dst".into(), json!("1.2.3.4 cs1=x"));
    data.insert("count".into(), json!("12abc"));
    data.insert("score".into(), json!("Infinity"));
    data.insert("port".into(), json!(65536));
    data.insert("mac".into(), json!("zz:zz:zz:zz:zz:zz"));
    data.insert("ip6".into(), json!("not-an-ip"));
    data.insert("first_seen".into(), json!("yesterday"));
    data.insert("direction".into(), json!(7));
    data.insert("tags".into(), json!(vec![HOSTILE; 50]));
    data.insert("nested".into(), json!({"k": {"x": HOSTILE}}));
    for i in 0..300 {
        data.insert(format!("extra_{i}"), json!(HOSTILE));
    }
    Value::Object(data)
}

#[test]
fn values_round_trip_through_a_strict_parser() {
    let l = line(MAPPING, ordinary());
    let p = parse(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
    assert_eq!(
        p.header,
        [
            "Ven|dor\\",
            "Pro=duct",
            "1.0",
            "R-1",
            "SQL injection in /login",
            "10"
        ]
    );
    assert_eq!(p.ext("rt"), Some("1795341600000"));
    assert_eq!(p.ext("externalId"), Some(testing::EVENT_ID));
    assert_eq!(p.ext("msg"), Some("Union-based SQLi on id=1"));
    assert_eq!(p.ext("duser"), Some("bob"));
    assert_eq!(p.ext("request"), Some("https://app/login?id=1"));
    assert_eq!(p.ext("cs1"), Some("Acme"));
    assert_eq!(p.ext("cs1Label"), Some("Tenant"));
    assert_eq!(p.ext("cs2"), Some(r#"["sqli","owasp"]"#));
    assert_eq!(p.ext("cs3Label"), Some("Nested \\ = | label"));
    assert_eq!(p.ext("cn1"), Some("3"));
    assert_eq!(p.ext("cfp1"), Some("9.8"));
    assert_eq!(p.ext("spt"), Some("443"));
    assert_eq!(p.ext("smac"), Some("aa:bb:cc:dd:ee:ff"));
    assert_eq!(p.ext("c6a1"), Some("2001:db8::1"));
    assert_eq!(p.ext("start"), Some("1795341540250"));
    assert_eq!(p.ext("deviceDirection"), Some("0"));

    // Every string value survives escaping exactly (within the key's length).
    let mut data = ordinary();
    data["user"] = json!(HOSTILE);
    data["tenant_name"] = json!(HOSTILE);
    data["title"] = json!(HOSTILE);
    data["rule"] = json!(HOSTILE);
    let l = line(MAPPING, data);
    let p = parse(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
    assert_eq!(p.ext("suser"), Some(HOSTILE));
    assert_eq!(p.ext("cs1"), Some(HOSTILE));
    let header_form = HOSTILE.trim().replace(['\r', '\n'], " ");
    assert_eq!(p.header[3], header_form);
    assert_eq!(p.header[4], header_form);
}

#[test]
fn hostile_values_stay_within_key_limits() {
    let l = line(MAPPING, hostile());
    let p = parse(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
    assert_eq!(char_len(&p.header[4]), 512);
    assert_eq!(p.header[5], "10");
    for (key, max) in [
        ("msg", 1023),
        ("suser", 1023),
        ("cs1", 4000),
        ("act", 63),
        ("request", 1023),
    ] {
        let v = p.ext(key).unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(char_len(v), max, "{key}");
        assert_eq!(v, truncate(&HOSTILE.repeat(500), max).trim(), "{key}");
    }
    for key in [
        "src",
        "dst",
        "cn1",
        "cfp1",
        "spt",
        "smac",
        "c6a1",
        "start",
        "deviceDirection",
    ] {
        assert_eq!(p.ext(key), None, "{key} should be left out");
    }
    assert_eq!(p.ext("duser"), Some(HOSTILE.trim()));
}

#[test]
fn cefevent_strict_accepts_every_line() {
    let lines = vec![
        line(MAPPING, ordinary()),
        line(MAPPING, hostile()),
        line("", json!({})),
        line("", Value::Null),
        line(
            "",
            json!({"title": HOSTILE, "description": HOSTILE, "severity": "medium"}),
        ),
        line(r#"{"mapping":{}}"#, json!({"severity": -5})),
        line(
            MAPPING,
            json!({"severity": "high", "ip": "0.0.0.0", "port": 0, "count": -2147483648_i64}),
        ),
    ];
    let input = serde_json::to_string(&lines).unwrap();
    let out = harness::python("cef_check.py", &input);
    #[derive(serde::Deserialize)]
    struct Out {
        parsed: Vec<Parsed>,
    }
    let out: Out = serde_json::from_str(&out).expect("cef_check.py output");
    for (line, theirs) in lines.iter().zip(&out.parsed) {
        let ours = parse(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(&ours, theirs, "parsers disagree on {line}");
    }
}

/// A rule id and a title far over the spec's lengths (1023 and 512
/// characters), in multi-byte characters: the header fields are cut on
/// character boundaries to exactly those lengths, and the strict checker
/// (which counts header lengths itself) accepts the line.
#[test]
fn an_over_long_rule_and_title_are_cut_to_the_spec_lengths_and_pass_the_checker() {
    let rule = "é🦀r".repeat(700);
    let title = "ü|n".repeat(300);
    let vendor = "V".repeat(63);
    let l = line(
        &format!(r#"{{"vendor":"{vendor}","signature_id_field":"rule"}}"#),
        json!({"rule": rule, "title": title}),
    );
    harness::python("cef_check.py", &serde_json::to_string(&[&l]).unwrap());
    let p = parse(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
    assert_eq!(p.header[0], vendor);
    assert_eq!(char_len(&p.header[3]), 1023);
    assert_eq!(p.header[3], truncate(&rule, 1023));
    assert_eq!(char_len(&p.header[4]), 512);
    assert_eq!(p.header[4], truncate(&title, 512));
}

/// cefevent 0.5.6 checks neither the header fields' lengths nor the values
/// of TimeStamp keys; cef_check.py does, on both sides of each limit.
#[test]
fn the_checker_refuses_over_long_header_fields_and_timestamps_that_are_not_times() {
    let head = |vendor: &str, product: &str, version: &str, sig: &str, name: &str| {
        format!("CEF:0|{vendor}|{product}|{version}|{sig}|{name}|5|")
    };
    let ok_head = head("relay", "relay", "0.1", "rule", "name");
    let ext = "rt=1795341600000 externalId=e-1";
    let n = |c: &str, k: usize| c.repeat(k);
    // Accepted: each header field at its limit, and the spec's date forms.
    let good = [
        format!(
            "{}{ext}",
            head(
                &n("v", 63),
                &n("p", 63),
                &n("9", 31),
                &n("s", 1023),
                &n("ü", 512)
            )
        ),
        format!("{ok_head}rt=Nov 22 2026 10:00:00.250 UTC externalId=e-2"),
        format!("{ok_head}rt=Nov 22 10:00:00 externalId=e-3 start=Feb 29 2028 23:59:59 GMT+01:00"),
        format!("{ok_head}rt=0 externalId=e-4 end=Jan 01 2026 00:00:00.000"),
    ];
    // Refused, with what the report must say.
    let bad = [
        (
            format!(
                "{}{ext}",
                head("relay", "relay", "0.1", &n("s", 2000), "name")
            ),
            "signatureId is 2000 characters, over the spec's 1023",
        ),
        (
            format!(
                "{}{ext}",
                head(&n("v", 500), "relay", "0.1", "rule", "name")
            ),
            "deviceVendor is 500 characters, over the spec's 63",
        ),
        (
            format!("{}{ext}", head("relay", &n("p", 64), "0.1", "rule", "name")),
            "deviceProduct is 64 characters, over the spec's 63",
        ),
        (
            format!(
                "{}{ext}",
                head("relay", "relay", &n("9", 32), "rule", "name")
            ),
            "deviceVersion is 32 characters, over the spec's 31",
        ),
        (
            format!(
                "{}{ext}",
                head("relay", "relay", "0.1", "rule", &n("ü", 513))
            ),
            "name is 513 characters, over the spec's 512",
        ),
        (
            format!("{ok_head}rt=yesterday externalId=e-5"),
            "rt='yesterday' is neither epoch milliseconds",
        ),
        (
            format!("{ok_head}rt=1795341600000 externalId=e-6 start=2026-11-22T10:00:00Z"),
            "start='2026-11-22T10:00:00Z' is neither epoch milliseconds",
        ),
        (
            format!("{ok_head}rt=1795341600000 externalId=e-7 end=Feb 31 2026 10:00:00"),
            "end='Feb 31 2026 10:00:00': day is out of range",
        ),
    ];
    let lines: Vec<&str> = good
        .iter()
        .map(String::as_str)
        .chain(bad.iter().map(|(l, _)| l.as_str()))
        .collect();
    let report = harness::python_refuses("cef_check.py", &serde_json::to_string(&lines).unwrap());
    assert!(
        report.contains(&format!(
            "cefevent: {} valid, {} invalid",
            good.len(),
            bad.len()
        )),
        "{report}"
    );
    for (i, (_, why)) in bad.iter().enumerate() {
        let at = format!("line {}: AssertionError: {why}", good.len() + i);
        assert!(report.contains(&at), "expected {at:?} in:\n{report}");
    }
}
