//! The event a formatter receives.

use std::borrow::Cow;

use serde_json::Value;

use crate::data::{Data, MemberRef};
use crate::time::Timestamp;

/// An event as the relay accepted it (DESIGN §5).
///
/// `data` crosses the component boundary as JSON text and is read on
/// demand: [`Event::str`], [`Event::text`], [`Event::scalar`] and
/// [`Event::has`] read top-level members straight from that text, and only
/// what is asked for is decoded. [`Event::data`] gives the whole tree as a
/// [`Value`] (decoded on first use).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Event id (the idempotency key).
    pub id: String,
    /// Event type, e.g. `finding_added`.
    pub event_type: String,
    /// Event time as RFC 3339 text; see [`Event::timestamp`].
    pub time: String,
    data: Data,
}

impl Event {
    /// An event with `data` given as a value.
    pub fn new(
        id: impl Into<String>,
        event_type: impl Into<String>,
        time: impl Into<String>,
        data: Value,
    ) -> Event {
        Event {
            id: id.into(),
            event_type: event_type.into(),
            time: time.into(),
            data: Data::from_value(data),
        }
    }

    /// Builds an event from the fields that cross the component boundary;
    /// `data` is JSON text (empty text means no data). Invalid JSON is an
    /// error.
    pub fn from_parts(
        id: impl Into<String>,
        event_type: impl Into<String>,
        time: impl Into<String>,
        data: impl Into<String>,
    ) -> Result<Event, String> {
        Ok(Event {
            id: id.into(),
            event_type: event_type.into(),
            time: time.into(),
            data: Data::parse(data.into())?,
        })
    }

    /// The event's `data` (normally a JSON object) as a value, decoded on
    /// first use. Reading single fields with [`Event::str`] or
    /// [`Event::get`] is cheaper.
    pub fn data(&self) -> &Value {
        self.data.value()
    }

    /// The event's `data` as JSON text (empty when there is none).
    pub fn data_json(&self) -> &str {
        self.data.text()
    }

    /// The data value at a dotted path (`finding.severity`, `tags.0`).
    ///
    /// A top-level key that itself contains dots is matched first. Numeric
    /// segments index arrays. Returns `None` when any segment is missing.
    /// Only the top-level member the path starts in is decoded.
    pub fn get(&self, path: &str) -> Option<&Value> {
        if path.is_empty() {
            return None;
        }
        if !self.data.is_object() {
            return lookup(self.data.value(), path);
        }
        if let Some(m) = self.data.member(path) {
            return Some(m.value());
        }
        let (head, rest) = path.split_once('.')?;
        rest.split('.')
            .try_fold(self.data.member(head)?.value(), step)
    }

    /// Whether the data has a value (`null` included) at `path`.
    pub fn has(&self, path: &str) -> bool {
        match self.top(path) {
            Top::Member(_) => true,
            Top::Missing => false,
            Top::Path => self.get(path).is_some(),
        }
    }

    /// The string at `path`, or `None` when it is missing or not a string.
    pub fn str(&self, path: &str) -> Option<&str> {
        match self.top(path) {
            Top::Member(m) => m.str(),
            Top::Missing => None,
            Top::Path => self.get(path).and_then(Value::as_str),
        }
    }

    /// The scalar at `path` as text (strings as-is, numbers and booleans
    /// rendered), or `None` when missing, null, an object or an array.
    pub fn text(&self, path: &str) -> Option<String> {
        self.scalar(path).map(Cow::into_owned)
    }

    /// [`Event::text`] without a copy when the value is a string.
    pub fn scalar(&self, path: &str) -> Option<Cow<'_, str>> {
        match self.top(path) {
            Top::Member(m) => m.scalar(),
            Top::Missing => None,
            Top::Path => match self.get(path)? {
                Value::String(s) => Some(Cow::Borrowed(s)),
                v => scalar_text(v).map(Cow::Owned),
            },
        }
    }

    /// Where `path` leads in an object's top level, without decoding.
    fn top(&self, path: &str) -> Top<'_> {
        if !self.data.is_object() || path.is_empty() {
            return Top::Path;
        }
        match self.data.member(path) {
            Some(m) => Top::Member(m),
            None if path.contains('.') => Top::Path,
            None => Top::Missing,
        }
    }

    /// The top-level scalar fields of `data` (strings, numbers, booleans) as
    /// `(key, text)` pairs, sorted by key. Nulls, objects and arrays are skipped.
    pub fn scalar_fields(&self) -> Vec<(&str, String)> {
        self.scalars().map(|(k, v)| (k, v.into_owned())).collect()
    }

    /// [`Event::scalar_fields`] without copies of the strings.
    pub fn scalars(&self) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
        self.data.scalars()
    }

    /// The event time, parsed.
    pub fn timestamp(&self) -> Result<Timestamp, String> {
        Timestamp::parse_rfc3339(&self.time)
    }

    /// The event a destination gets as its payload. The core's `json`
    /// format without a body template sends the event itself
    /// (`{"id", "type", "time", "data"}`): that is read back whole. Any other
    /// JSON object is taken as the data of an event with no id, type or
    /// time; any other payload as `{"text": <body text>}`.
    pub fn from_payload(payload: &crate::Payload) -> Event {
        let essence = payload
            .content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let json = essence == "application/json" || essence.ends_with("+json");
        let whole = std::str::from_utf8(&payload.body)
            .ok()
            .filter(|_| json)
            .and_then(|text| Data::parse(text.to_owned()).ok())
            .filter(Data::is_object);
        let Some(whole) = whole else {
            return Event::new(
                "",
                "",
                "",
                serde_json::json!({ "text": String::from_utf8_lossy(&payload.body) }),
            );
        };
        let str_of = |key: &str| whole.member(key).and_then(MemberRef::str);
        let data = whole
            .member("data")
            .map(MemberRef::json)
            .filter(|d| d.starts_with('{'))
            .and_then(|d| Data::parse(d.to_owned()).ok());
        match (str_of("type"), data) {
            (Some(event_type), Some(data)) => Event {
                id: str_of("id").unwrap_or_default().to_owned(),
                event_type: event_type.to_owned(),
                time: str_of("time").unwrap_or_default().to_owned(),
                data,
            },
            _ => Event {
                id: String::new(),
                event_type: String::new(),
                time: String::new(),
                data: whole,
            },
        }
    }

    /// Renders `{{name}}` placeholders: `id`, `type`, `time`, `data.path` or
    /// a bare data path (`incident_id`, `finding.host`), like relay.yaml's
    /// templates. Missing values render empty; text outside placeholders is
    /// kept as is.
    pub fn render(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len() + 16);
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            let Some(len) = rest[start + 2..].find("}}") else {
                break;
            };
            out.push_str(&rest[..start]);
            let name = rest[start + 2..start + 2 + len].trim();
            let value = match name {
                "id" => Some(self.id.clone()),
                "type" => Some(self.event_type.clone()),
                "time" => Some(self.time.clone()),
                _ => self.text(name.strip_prefix("data.").unwrap_or(name)),
            };
            out.push_str(&value.unwrap_or_default());
            rest = &rest[start + 2 + len + 2..];
        }
        out.push_str(rest);
        out
    }
}

/// Where a path leads in the top level of an object's data.
enum Top<'a> {
    /// To this member (the whole path is its key).
    Member(MemberRef<'a>),
    /// Nowhere: no such key, and the path has no dots.
    Missing,
    /// Somewhere only a walk of the decoded value can tell.
    Path,
}

/// Renders a JSON scalar as text: strings as-is, numbers and booleans in JSON
/// notation. Returns `None` for null, objects and arrays.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = root.as_object().and_then(|m| m.get(path)) {
        return Some(v);
    }
    path.split('.').try_fold(root, step)
}

/// One segment of a dotted path: a key of an object, an index of an array.
fn step<'a>(value: &'a Value, segment: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(data: Value) -> Event {
        Event::new("e1", "t", "2026-11-22T10:00:00Z", data)
    }

    #[test]
    fn render_fills_placeholders_and_leaves_missing_ones_empty() {
        let e = ev(json!({"incident_id": "INC-7", "finding": {"host": "h1"}, "n": 3}));
        assert_eq!(e.render("{{type}}:{{ incident_id }}"), "t:INC-7");
        assert_eq!(e.render("{{data.finding.host}}/{{n}}/{{id}}"), "h1/3/e1");
        assert_eq!(e.render("x{{missing}}y"), "xy");
        assert_eq!(e.render("open {{ never closed"), "open {{ never closed");
        assert_eq!(e.render("é{{time}}é"), "é2026-11-22T10:00:00Zé");
    }

    #[test]
    fn from_payload_reads_the_core_event_json_or_takes_data() {
        let whole = crate::Payload::json(
            &json!({"id": "e9", "type": "x", "time": "2026-01-01T00:00:00Z", "data": {"a": 1}}),
        )
        .unwrap();
        let e = Event::from_payload(&whole);
        assert_eq!((e.id.as_str(), e.event_type.as_str()), ("e9", "x"));
        assert_eq!(e.data(), &json!({"a": 1}));
        let templated = crate::Payload::json(&json!({"title": "T"})).unwrap();
        assert_eq!(
            Event::from_payload(&templated).data(),
            &json!({"title": "T"})
        );
        let text = crate::Payload::text("CEF:0|x");
        assert_eq!(
            Event::from_payload(&text).data(),
            &json!({"text": "CEF:0|x"})
        );
    }

    #[test]
    fn dotted_paths_and_array_indexes() {
        let e = ev(json!({"a": {"b": {"c": 3}}, "tags": ["x", "y"], "k.with.dots": true}));
        assert_eq!(e.get("a.b.c"), Some(&json!(3)));
        assert_eq!(e.get("tags.1"), Some(&json!("y")));
        assert_eq!(e.get("k.with.dots"), Some(&json!(true)));
        assert_eq!(e.get("a.x"), None);
        assert_eq!(e.get("tags.9"), None);
        assert_eq!(e.get("tags.one"), None);
        assert_eq!(e.get(""), None);
    }

    #[test]
    fn accessors_read_from_the_text_agree_with_a_walk_of_the_decoded_tree() {
        let data = json!({"title": "T", "esc": "a\"b\n", "n": 9.8, "i": -3, "big": 1e300,
            "b": true, "z": null, "o": {"k": "v", "l": [1, "x"]}, "k.with.dots": "d",
            "tags": ["a", "b"], "é": "u"});
        let e = Event::from_parts("i", "t", "", data.to_string()).unwrap();
        let paths = [
            "title",
            "esc",
            "n",
            "i",
            "big",
            "b",
            "z",
            "o",
            "o.k",
            "o.l.1",
            "o.l.9",
            "o.",
            "k.with.dots",
            "tags.0",
            "tags.x",
            "missing",
            "missing.x",
            "",
            "é",
        ];
        for path in paths {
            let want = if path.is_empty() {
                None
            } else {
                lookup(&data, path)
            };
            assert_eq!(e.get(path), want, "{path}");
            assert_eq!(e.has(path), want.is_some(), "{path}");
            assert_eq!(e.str(path), want.and_then(Value::as_str), "{path}");
            assert_eq!(e.text(path), want.and_then(scalar_text), "{path}");
        }
        let scalars: Vec<(&str, String)> = data
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), scalar_text(v)?)))
            .collect();
        assert_eq!(e.scalar_fields(), scalars);
        assert_eq!(e.data(), &data);
    }

    #[test]
    fn reading_top_level_fields_decodes_no_tree() {
        let e = Event::from_parts("i", "t", "", r#"{"a": "x", "o": {"k": 1}}"#).unwrap();
        assert_eq!(
            (e.str("a"), e.has("o"), e.text("missing")),
            (Some("x"), true, None)
        );
        assert_eq!(e.get("o.k"), Some(&json!(1)));
        assert!(!e.data.is_decoded(), "only `o` was decoded");
        assert_eq!(e.data_json(), r#"{"a": "x", "o": {"k": 1}}"#);
    }

    #[test]
    fn data_that_is_not_an_object_is_read_as_a_tree() {
        let e = Event::from_parts("i", "t", "", r#"["x", {"k": "v"}]"#).unwrap();
        assert_eq!(e.str("0"), Some("x"));
        assert_eq!(e.text("1.k").as_deref(), Some("v"));
        assert!(e.scalar_fields().is_empty());
        assert!(!e.has("k"));
    }

    #[test]
    fn str_and_text() {
        let e = ev(json!({"s": "v", "n": 1.5, "b": false, "z": null, "o": {}}));
        assert_eq!(e.str("s"), Some("v"));
        assert_eq!(e.str("n"), None);
        assert_eq!(e.text("n").as_deref(), Some("1.5"));
        assert_eq!(e.text("b").as_deref(), Some("false"));
        assert_eq!(e.text("z"), None);
        assert_eq!(e.text("o"), None);
    }

    #[test]
    fn scalar_fields_sorted_and_filtered() {
        let e = ev(json!({"b": 2, "a": "x", "n": null, "o": {"x": 1}, "l": [1]}));
        assert_eq!(
            e.scalar_fields(),
            vec![("a", "x".to_string()), ("b", "2".to_string())]
        );
        assert!(ev(json!([1, 2])).scalar_fields().is_empty());
    }

    #[test]
    fn from_parts_parses_data() {
        let e = Event::from_parts("i", "t", "2026-11-22T10:00:00Z", r#"{"x":1}"#).unwrap();
        assert_eq!(e.data(), &json!({"x": 1}));
        assert_eq!(
            Event::from_parts("i", "t", "", "").unwrap().data(),
            &Value::Null
        );
        let err = Event::from_parts("i", "t", "", "{nope").unwrap_err();
        assert!(err.contains("not valid JSON"), "{err}");
    }
}
