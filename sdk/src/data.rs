//! An event's `data`, read on demand: the JSON text as it crossed the
//! component boundary, and an index of its top-level members (key and the
//! span of the value's text), sorted by key. A formatter that reads a few
//! top-level strings gets them as slices of that text; a member's value is
//! decoded into a [`Value`] only when asked for (and kept), and the whole
//! tree only by [`Data::value`]. Decoding the whole tree up front was the
//! largest part of a warm formatter call in wasm.
//!
//! The relay itself reads a digest's `data` the same way: a digest is
//! spliced from its members' stored text, and rendering it sends that text
//! on without decoding it (`relay::event::Data`).

use std::borrow::Cow;
use std::ops::Range;
use std::sync::OnceLock;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// An event's `data` read on demand: its JSON text and an index of its
/// top-level members; a member is decoded only when asked for, the whole
/// tree only by [`Data::value`]. [`crate::Event`] keeps its data in one;
/// plugins read it through `Event`'s accessors. Public so that the relay
/// reads a digest's data with the same code.
#[derive(Debug, Clone, Default)]
pub struct Data {
    /// The JSON text (empty: no data, i.e. `null`).
    raw: Box<str>,
    /// Top-level members when the data is an object, sorted by key, the last
    /// of duplicate keys kept (as the decoded object keeps it).
    members: Vec<Member>,
    /// Whether the data is an object (its members are indexed).
    object: bool,
    /// The whole tree, decoded on first use.
    value: OnceLock<Value>,
}

#[derive(Debug, Clone)]
struct Member {
    /// The key: a span of `raw`, or its unescaped text when it had escapes.
    key: Key,
    /// The key's first 8 bytes (big-endian, zero-padded) and its length:
    /// most comparisons of keys end there, without reading the key.
    tag: u64,
    key_len: usize,
    /// Whether the value is a string without escapes (its text, less the
    /// quotes, is the string).
    plain: bool,
    /// The span of the value's JSON text in `raw`.
    value: Range<usize>,
    /// The value, decoded on first use.
    decoded: OnceLock<Value>,
}

#[derive(Debug, Clone)]
enum Key {
    Span(Range<usize>),
    Owned(Box<str>),
}

impl Data {
    /// Indexes JSON text; an error names what is wrong with it. Empty text
    /// is no data (`null`).
    pub fn parse(raw: String) -> Result<Data, String> {
        let raw = raw.into_boxed_str();
        let bad = |e: serde_json::Error| format!("event data is not valid JSON: {e}");
        if raw.trim().is_empty() {
            let value = OnceLock::from(Value::Null);
            return Ok(Data {
                raw,
                value,
                ..Data::default()
            });
        }
        if !raw.trim_start().starts_with('{') {
            // Not an object: nothing to index, decode it whole now.
            let value = serde_json::from_str::<Value>(&raw).map_err(bad)?;
            return Ok(Data {
                raw,
                value: OnceLock::from(value),
                ..Data::default()
            });
        }
        let base = raw.as_ptr() as usize;
        let span = |s: &str| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let Members(found) = serde_json::from_str::<Members<'_>>(&raw).map_err(bad)?;
        // Usually no string has an escape: one scan of the text says so.
        let escapes = raw.contains('\\');
        let members: Vec<Member> = found
            .into_iter()
            .map(|(key, value)| {
                let text = value.get();
                let plain = text.starts_with('"') && !(escapes && text.contains('\\'));
                let (tag, key_len) = (tag_of(&key), key.len());
                let key = match key {
                    Cow::Borrowed(k) => Key::Span(span(k)),
                    Cow::Owned(k) => Key::Owned(k.into_boxed_str()),
                };
                Member::new(key, tag, key_len, span(text), plain)
            })
            .collect();
        Ok(Data::object(raw, members))
    }

    /// An indexed object: `members` (in document order) sorted by key, of
    /// equal keys the last kept (as the decoded object keeps it).
    fn object(raw: Box<str>, mut members: Vec<Member>) -> Data {
        // Stable: of equal keys the one written last stays last.
        members.sort_by(|a, b| a.cmp_key(&raw, b.tag, b.key(&raw)));
        let mut kept: Vec<Member> = Vec::with_capacity(members.len());
        for m in members {
            match kept.last_mut() {
                Some(last) if last.key(&raw) == m.key(&raw) => *last = m,
                _ => kept.push(m),
            }
        }
        Data {
            raw,
            members: kept,
            object: true,
            value: OnceLock::new(),
        }
    }

    /// An object whose top-level members the caller already knows: each
    /// is its key (plain text, no escapes, each key once) and the span of
    /// its value's JSON text in `raw`. Nothing is scanned or checked: the
    /// caller built `raw` from JSON it had checked (the relay's digest,
    /// spliced from its members' stored bodies, which were checked when
    /// they were accepted). Wrong spans read wrong members; they never
    /// read outside `raw` (a span past its end reads as no member).
    pub fn from_object_spans(raw: String, spans: &[(&str, Range<usize>)]) -> Data {
        let raw = raw.into_boxed_str();
        let members: Vec<Member> = spans
            .iter()
            .filter_map(|(key, value)| {
                let text = raw.get(value.clone())?;
                let plain = text.starts_with('"') && !text.contains('\\');
                let owned = Key::Owned((*key).into());
                Some(Member::new(
                    owned,
                    tag_of(key),
                    key.len(),
                    value.clone(),
                    plain,
                ))
            })
            .collect();
        Data::object(raw, members)
    }

    /// Data from a decoded value (tests, payloads read back).
    pub fn from_value(value: Value) -> Data {
        let raw = match &value {
            Value::Null => String::new(),
            v => v.to_string(),
        };
        // Text made by serde_json from a value is valid JSON.
        match Data::parse(raw) {
            Ok(data) => {
                let _ = data.value.set(value);
                data
            }
            Err(_) => Data {
                value: OnceLock::from(value),
                ..Data::default()
            },
        }
    }

    /// The whole tree.
    pub fn value(&self) -> &Value {
        self.value.get_or_init(|| {
            if self.raw.trim().is_empty() {
                return Value::Null;
            }
            // `parse` checked the text.
            serde_json::from_str(&self.raw).unwrap_or(Value::Null)
        })
    }

    /// Whether the whole tree has been decoded.
    pub fn is_decoded(&self) -> bool {
        self.value.get().is_some()
    }

    /// The JSON text (empty for no data).
    pub fn text(&self) -> &str {
        &self.raw
    }

    /// Whether the data is an object.
    pub fn is_object(&self) -> bool {
        self.object
    }

    /// The top-level member `key` (none when the data is not an object).
    pub fn member(&self, key: &str) -> Option<MemberRef<'_>> {
        // Few members (the usual event): a scan that compares lengths first
        // calls `memcmp` less often than a binary search.
        let tag = tag_of(key);
        let found = if self.members.len() <= 32 {
            self.members
                .iter()
                .find(|m| m.tag == tag && m.key_len == key.len() && m.key(&self.raw) == key)
        } else {
            self.members
                .binary_search_by(|m| m.cmp_key(&self.raw, tag, key))
                .ok()
                .map(|i| &self.members[i])
        };
        found.map(|member| MemberRef {
            member,
            raw: &self.raw,
        })
    }

    /// The top-level scalars as `(key, text)`, sorted by key.
    pub fn scalars(&self) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
        self.members
            .iter()
            .filter_map(|m| Some((m.key(&self.raw), m.scalar(&self.raw)?)))
    }
}

/// A top-level member of the data.
#[derive(Clone, Copy)]
pub struct MemberRef<'a> {
    member: &'a Member,
    raw: &'a str,
}

impl<'a> MemberRef<'a> {
    /// The value, decoded (once).
    pub fn value(self) -> &'a Value {
        self.member.decoded(self.raw)
    }

    /// The value's JSON text.
    pub fn json(self) -> &'a str {
        self.member.text(self.raw)
    }

    /// The string, without decoding it when it has no escapes; `None` when
    /// the value is not a string.
    pub fn str(self) -> Option<&'a str> {
        self.member
            .str(self.raw)
            .or_else(|| self.member.decoded(self.raw).as_str())
    }

    /// The scalar as text (see [`crate::scalar_text`]), borrowed when it is
    /// a string.
    pub fn scalar(self) -> Option<Cow<'a, str>> {
        self.member.scalar(self.raw)
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        self.value() == other.value()
    }
}

impl Member {
    fn new(key: Key, tag: u64, key_len: usize, value: Range<usize>, plain: bool) -> Member {
        Member {
            key,
            tag,
            key_len,
            plain,
            value,
            decoded: OnceLock::new(),
        }
    }

    fn key<'a>(&'a self, raw: &'a str) -> &'a str {
        match &self.key {
            Key::Span(r) => &raw[r.clone()],
            Key::Owned(k) => k,
        }
    }

    /// This member's key against another key (with its tag): byte order.
    fn cmp_key(&self, raw: &str, tag: u64, key: &str) -> std::cmp::Ordering {
        self.tag.cmp(&tag).then_with(|| self.key(raw).cmp(key))
    }

    fn text<'a>(&self, raw: &'a str) -> &'a str {
        &raw[self.value.clone()]
    }

    fn decoded(&self, raw: &str) -> &Value {
        self.decoded
            .get_or_init(|| serde_json::from_str(self.text(raw)).unwrap_or(Value::Null))
    }

    /// The string's text when the value is a string without escapes.
    fn str<'a>(&self, raw: &'a str) -> Option<&'a str> {
        let t = self.text(raw);
        self.plain.then(|| t.get(1..t.len() - 1)).flatten()
    }

    fn scalar<'a>(&'a self, raw: &'a str) -> Option<Cow<'a, str>> {
        match self.str(raw) {
            Some(s) => Some(Cow::Borrowed(s)),
            None => match self.decoded(raw) {
                Value::String(s) => Some(Cow::Borrowed(s)),
                v => crate::scalar_text(v).map(Cow::Owned),
            },
        }
    }
}

/// A key's first 8 bytes as a big-endian number, zero-padded: ordered as
/// the keys are when they differ there.
fn tag_of(key: &str) -> u64 {
    let mut head = [0u8; 8];
    let n = key.len().min(8);
    head[..n].copy_from_slice(&key.as_bytes()[..n]);
    u64::from_be_bytes(head)
}

/// The top-level members of a JSON object: keys (borrowed unless escaped)
/// and the values' text, in document order.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(key) = map.next_key_seed(KeySeed)? {
            out.push((key, map.next_value::<&'de RawValue>()?));
        }
        Ok(Members(out))
    }
}

/// A map key, borrowed from the text when it has no escapes.
struct KeySeed;

impl<'de> de::DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Members given by their spans read as parsing would find them; a
    /// span outside the text is no member.
    #[test]
    fn an_object_indexed_from_spans_reads_like_the_same_text_parsed() {
        let text = r#"{"s":"plain","list":[1,{"k":"v"}],"n":7}"#;
        let span = |value: &str| {
            let at = text.find(value).unwrap();
            at..at + value.len()
        };
        let spans = [
            ("s", span(r#""plain""#)),
            ("list", span(r#"[1,{"k":"v"}]"#)),
            ("n", span("7")),
            ("gone", 40..99),
        ];
        let d = Data::from_object_spans(text.to_owned(), &spans);
        let parsed = Data::parse(text.to_owned()).unwrap();
        for key in ["s", "list", "n"] {
            let (a, b) = (d.member(key).unwrap(), parsed.member(key).unwrap());
            assert_eq!((a.json(), a.str()), (b.json(), b.str()), "{key}");
            assert_eq!(a.value(), b.value(), "{key}");
        }
        assert!(d.member("gone").is_none());
        assert_eq!(d.value(), parsed.value());
        assert!(d.is_object());
    }

    #[test]
    fn members_are_read_from_the_text_and_agree_with_the_decoded_tree() {
        let text = r#" {"b": "x\"y", "a\u0041": 1.50, "s": "plain", "o": {"k": [1]}, "n": null, "b": "last"} "#;
        let d = Data::parse(text.to_owned()).unwrap();
        let tree: Value = serde_json::from_str(text).unwrap();
        assert_eq!(d.value(), &tree);
        assert!(d.is_object());
        // Sorted by key, the duplicate `b` written last kept.
        let keys: Vec<&str> = d.members.iter().map(|m| m.key(&d.raw)).collect();
        assert_eq!(keys, ["aA", "b", "n", "o", "s"]);
        assert_eq!(d.member("b").and_then(MemberRef::str), Some("last"));
        assert_eq!(d.member("s").and_then(MemberRef::str), Some("plain"));
        assert_eq!(d.member("aA").map(MemberRef::value), Some(&json!(1.5)));
        assert_eq!(
            d.member("aA").and_then(MemberRef::scalar).as_deref(),
            Some("1.5")
        );
        assert_eq!(
            d.member("o").map(MemberRef::value),
            Some(&json!({"k": [1]}))
        );
        assert_eq!(d.member("o").and_then(MemberRef::scalar), None);
        assert!(d.member("n").is_some() && d.member("missing").is_none());
        let scalars: Vec<(&str, String)> = d.scalars().map(|(k, v)| (k, v.into_owned())).collect();
        assert_eq!(
            scalars,
            [
                ("aA", "1.5".to_owned()),
                ("b", "last".to_owned()),
                ("s", "plain".to_owned())
            ]
        );
    }

    #[test]
    fn keys_that_share_their_first_bytes_are_told_apart_and_sorted_by_bytes() {
        let text = r#"{"tenant_name_2": 2, "tenant_name": 1, "tenant": 0, "tenant_name_10": 10, "a\u0000": 5, "a": 4}"#;
        let d = Data::parse(text.to_owned()).unwrap();
        let keys: Vec<&str> = d.members.iter().map(|m| m.key(&d.raw)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys.len(), 6);
        for (k, n) in [
            ("tenant_name_2", 2),
            ("tenant_name", 1),
            ("tenant", 0),
            ("tenant_name_10", 10),
            ("a\u{0}", 5),
            ("a", 4),
        ] {
            assert_eq!(d.member(k).map(MemberRef::value), Some(&json!(n)), "{k}");
        }
        assert!(d.member("tenant_nam").is_none() && d.member("tenant_name_").is_none());
    }

    #[test]
    fn an_escaped_string_is_decoded_and_a_plain_one_is_not() {
        let d = Data::parse(r#"{"e": "a\nb", "p": "a b"}"#.to_owned()).unwrap();
        let (e, p) = (d.member("e").unwrap(), d.member("p").unwrap());
        assert_eq!(e.str(), Some("a\nb"));
        assert!(e.member.decoded.get().is_some());
        assert_eq!(p.str(), Some("a b"));
        assert!(p.member.decoded.get().is_none());
    }

    #[test]
    fn text_that_is_not_json_is_refused_and_other_values_are_not_indexed() {
        for bad in ["{nope", r#"{"a": 1} x"#, r#"{"a": "\q"}"#, "[1,", "tru"] {
            let e = Data::parse(bad.to_owned()).unwrap_err();
            assert!(e.contains("not valid JSON"), "{bad}: {e}");
        }
        let list = Data::parse("[1, 2]".to_owned()).unwrap();
        assert!(!list.is_object());
        assert_eq!(list.value(), &json!([1, 2]));
        assert_eq!(Data::parse(" ".to_owned()).unwrap().value(), &Value::Null);
        assert_eq!(
            Data::from_value(json!({"a": "b"}))
                .member("a")
                .and_then(MemberRef::str),
            Some("b")
        );
    }
}
