//! The event: what producers post and what every later stage reads.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// A normalized, accepted event. `time` is RFC 3339 (the producer's, or the
/// time of receipt when the producer gave none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub time: String,
    pub data: Data,
}

/// An event's `data`: JSON text read on demand (what ingest keeps of a
/// producer's body, what is read back from a stored body, a digest spliced
/// from its members' stored text), or a decoded value (what a source or
/// the relay builds). Both read as a [`Value`] through `Deref`; the text one
/// decodes its whole tree only then, once. What reads one top-level member
/// ([`Data::member`]: routing paths, template variables) decodes only that
/// member, and what writes the whole data out (a template's `{{data}}`, the
/// stored body, a plugin's event) copies the text as it is.
#[derive(Debug, Clone)]
pub enum Data {
    Value(Value),
    Text(relay_sdk::Data),
}

impl Data {
    /// Indexes JSON text without decoding it; the error says what is wrong
    /// with the text. Empty text is no data (`null`).
    pub fn from_text(text: String) -> Result<Data, String> {
        if text.trim().is_empty() {
            return Ok(Data::Value(Value::Null));
        }
        relay_sdk::Data::parse(text).map(Data::Text)
    }

    /// The top-level member `key` (`None` when absent or when the data is
    /// not an object), decoding at most that member.
    pub fn member(&self, key: &str) -> Option<&Value> {
        match self {
            Data::Value(v) => v.get(key),
            Data::Text(t) => t.member(key).map(|m| m.value()),
        }
    }

    /// The value at a dotted path (array items by index), decoding of text
    /// only the top-level member the path goes into (data that is not an
    /// object is decoded whole).
    pub fn path<'p>(&self, path: impl IntoIterator<Item = &'p str>) -> Option<&Value> {
        let mut segs = path.into_iter();
        let Some(top) = segs.next() else {
            return Some(self);
        };
        let mut cur = match self.member(top) {
            Some(v) => v,
            None if self.is_object() => return None,
            None => match &**self {
                Value::Array(a) => a.get(top.parse::<usize>().ok()?)?,
                _ => return None,
            },
        };
        for seg in segs {
            cur = match cur {
                Value::Object(m) => m.get(seg)?,
                Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// Whether the data is an object, without decoding text.
    pub fn is_object(&self) -> bool {
        match self {
            Data::Value(v) => v.is_object(),
            Data::Text(t) => t.is_object(),
        }
    }

    /// The data as a value to change (text is decoded once, and stays a
    /// value).
    pub fn to_mut(&mut self) -> &mut Value {
        if let Data::Text(t) = self {
            *self = Data::Value(t.value().clone());
        }
        match self {
            Data::Value(v) => v,
            Data::Text(_) => unreachable!("made a value just above"),
        }
    }

    /// The whole data as JSON text.
    pub fn to_json(&self) -> String {
        match self {
            Data::Value(v) => v.to_string(),
            Data::Text(t) => t.text().to_owned(),
        }
    }
}

impl Default for Data {
    fn default() -> Data {
        Data::Value(Value::Null)
    }
}

impl From<Value> for Data {
    fn from(v: Value) -> Data {
        Data::Value(v)
    }
}

impl std::ops::Deref for Data {
    type Target = Value;
    fn deref(&self) -> &Value {
        match self {
            Data::Value(v) => v,
            Data::Text(t) => t.value(),
        }
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        **self == **other
    }
}

impl PartialEq<Value> for Data {
    fn eq(&self, other: &Value) -> bool {
        **self == *other
    }
}

impl Serialize for Data {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Data::Value(v) => v.serialize(s),
            // The text was checked when it was indexed; this borrows it
            // (one scan, no tree) so that serde_json writes it as it is.
            Data::Text(t) => serde_json::from_str::<&RawValue>(t.text())
                .map_err(serde::ser::Error::custom)?
                .serialize(s),
        }
    }
}

/// Kept as text: a stored body's data is written out again as it was
/// received, and decoded only where something reads into it.
impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Data, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Data::from_text(Box::<str>::from(raw).into_string()).map_err(serde::de::Error::custom)
    }
}

/// Milliseconds since the Unix epoch, the store's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 rendering of a store timestamp (UTC, millisecond precision).
pub fn rfc3339_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}

/// A fresh time-ordered id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::Data;
    use serde_json::json;

    #[test]
    fn text_data_reads_a_member_and_writes_itself_out_without_decoding_the_whole_tree() {
        let text = r#"{"b": [1, {"x": "\u00e9"}], "a": "plain", "n": null}"#;
        let data = Data::from_text(text.to_owned()).unwrap();
        assert!(data.is_object());
        assert_eq!(data.member("a"), Some(&json!("plain")));
        assert_eq!(data.member("b"), Some(&json!([1, {"x": "é"}])));
        assert_eq!(data.member("missing"), None);
        // Written out as it came, spacing and escapes kept.
        assert_eq!(serde_json::to_string(&data).unwrap(), text);
        assert_eq!(data.to_json(), text);
        let Data::Text(t) = &data else {
            panic!("text data is kept as text")
        };
        assert!(!t.is_decoded(), "no read so far needed the whole tree");
        // The whole value, when asked for, is the text's.
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(*data, value);
        assert_eq!(data, Data::from(value.clone()));
        // Changing it makes it a value.
        let mut changed = data.clone();
        changed.to_mut()["a"] = json!("changed");
        assert_eq!(changed.member("a"), Some(&json!("changed")));
        assert!(matches!(changed, Data::Value(_)));
    }

    #[test]
    fn text_that_is_not_json_is_refused_and_empty_text_is_null() {
        let err = Data::from_text(r#"{"a": 1"#.to_owned()).unwrap_err();
        assert!(err.contains("not valid JSON"), "{err}");
        let empty = Data::from_text(String::new()).unwrap();
        assert_eq!(*empty, serde_json::Value::Null);
        assert_eq!(serde_json::to_string(&empty).unwrap(), "null");
        assert_eq!(empty.to_json(), "null");
        assert!(!empty.is_object());
    }

    /// A stored body read back keeps its data as the text it was written
    /// with, and a path reads one top-level member of it.
    #[test]
    fn a_stored_event_reads_back_with_its_data_as_text_and_a_path_decodes_one_member() {
        let body = r#"{"id":"e1","type":"t","time":"2026-01-01T00:00:00Z","data":{"z": {"k": [10, 20]}, "a": "\u00e9"}}"#;
        let event: super::Event = serde_json::from_str(body).unwrap();
        assert_eq!(
            event.data.to_json(),
            r#"{"z": {"k": [10, 20]}, "a": "\u00e9"}"#
        );
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            body,
            "written out as read"
        );
        assert_eq!(event.data.path(["z", "k", "1"]), Some(&json!(20)));
        assert_eq!(event.data.path(["a"]), Some(&json!("é")));
        assert_eq!(event.data.path(["z", "missing"]), None);
        assert_eq!(event.data.path(["a", "0"]), None, "a string has no items");
        assert_eq!(event.data.path([]), Some(&*event.data));
        let Data::Text(t) = &event.data else {
            panic!("a stored body's data is kept as text")
        };
        assert!(t.is_decoded(), "the empty path asked for the whole tree");
        let event: super::Event = serde_json::from_str(body).unwrap();
        assert_eq!(event.data.path(["z", "k", "0"]), Some(&json!(10)));
        let Data::Text(t) = &event.data else {
            panic!("a stored body's data is kept as text")
        };
        assert!(
            !t.is_decoded(),
            "a path decodes only the member it goes into"
        );
    }

    #[test]
    fn a_path_into_data_that_is_an_array_takes_items_by_index_from_text_and_value() {
        let text = Data::from_text(r#"[{"host": "a"}, {"host": "b"}]"#.into()).unwrap();
        let value = Data::Value(json!([{"host": "a"}, {"host": "b"}]));
        for data in [&text, &value] {
            assert_eq!(data.path(["1", "host"]), Some(&json!("b")));
            assert_eq!(data.path(["0"]), Some(&json!({"host": "a"})));
            assert_eq!(data.path(["2"]), None, "past the end");
            assert_eq!(data.path(["host"]), None, "not an index");
        }
        let object = Data::from_text(r#"{"0": "zero"}"#.into()).unwrap();
        assert_eq!(object.path(["0"]), Some(&json!("zero")), "a member named 0");
        assert_eq!(object.path(["1"]), None);
    }

    #[test]
    fn rfc3339_ms_renders_utc_with_millis() {
        assert_eq!(
            super::rfc3339_ms(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
