//! Ingest: parse and check posted events, store them with their deliveries
//! in one transaction, then hand the deliveries to dispatch.
//!
//! Owns: the rules of §5 (shape, type catalogue, ids, batch atomicity).
//! The HTTP framing (auth, size limit, status codes) is `api`'s.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::config::valid_event_type;
use crate::dispatch::Dispatcher;
use crate::event::{Data, Event, new_id};
use crate::history;
use crate::route::{Decision, digest};
use crate::store::{self, Storage, Store, StoreError};
use crate::webhook::Webhooks;

/// Why a posted body was refused; `index` is the event's place in a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", index.map(|i| format!("events[{i}]: ")).unwrap_or_default())]
pub struct Invalid {
    pub code: &'static str,
    pub index: Option<usize>,
    pub message: String,
}

fn invalid(code: &'static str, index: Option<usize>, message: impl Into<String>) -> Invalid {
    Invalid {
        code,
        index,
        message: message.into(),
    }
}

const MAX_ID_LEN: usize = 256;

/// How deep a posted body may nest arrays and objects: the deepest tree
/// serde_json decodes (its recursion limit), so any part of an accepted
/// body decodes.
const MAX_DEPTH: usize = 127;

/// Whether JSON text nests arrays and objects more than `limit` deep (one
/// scan of the bytes; brackets inside strings do not count). A string's
/// contents are skipped with `memchr` to its closing quote: most of an
/// event is string text, and a byte-at-a-time scan was ~0.65 µs of a
/// 1 KiB event's ~3.3 µs parse.
fn nests_deeper_than(text: &str, limit: usize) -> bool {
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                i += 1;
                // To the closing quote; an escape skips the byte after it.
                loop {
                    let rest = bytes.get(i..).unwrap_or_default();
                    match memchr::memchr2(b'"', b'\\', rest) {
                        Some(j) if rest[j] == b'\\' => i += j + 2,
                        Some(j) => {
                            i += j;
                            break;
                        }
                        // Unterminated: the JSON parser refuses it.
                        None => return false,
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// Parses one event or an array of them. One bad event refuses the batch.
pub fn parse(
    body: &[u8],
    catalogue: Option<&BTreeMap<String, String>>,
    max_batch: usize,
) -> Result<Vec<Event>, Invalid> {
    let malformed = |e: &dyn std::fmt::Display| {
        invalid(
            "malformed_json",
            None,
            format!("the body is not valid JSON: {e}"),
        )
    };
    let text = std::str::from_utf8(body).map_err(|e| malformed(&e))?;
    // Reading text into `RawValue`s sets no depth limit; a tree decoded
    // later (a filter, a plugin) has serde_json's. Refuse here what could
    // never be decoded, as a decoded body was refused.
    if nests_deeper_than(text, MAX_DEPTH) {
        return Err(malformed(&format_args!(
            "it nests arrays and objects more than {MAX_DEPTH} deep"
        )));
    }
    // Each item's `data` is kept as text: it is stored and sent as the
    // producer wrote it, never decoded into a tree unless something reads
    // into it (a filter, a template variable). A single event (the usual
    // body) is read in one pass into its fields; a batch as its items
    // first, each then read the same way.
    let now = crate::event::rfc3339_ms(crate::event::now_ms());
    let body = text.trim_start_matches([' ', '\t', '\n', '\r']);
    if body.starts_with('{') {
        let posted = serde_json::from_str::<Posted<'_>>(text).map_err(|e| malformed(&e))?;
        return Ok(vec![check_event(
            posted.fields,
            posted.data,
            None,
            catalogue,
            &now,
        )?]);
    }
    let batch = body.starts_with('[');
    let items: Vec<&RawValue> = if batch {
        serde_json::from_str(text).map_err(|e| malformed(&e))?
    } else {
        vec![serde_json::from_str(text).map_err(|e| malformed(&e))?]
    };
    if items.is_empty() {
        return Err(invalid("empty_batch", None, "the batch holds no events"));
    }
    if items.len() > max_batch {
        return Err(invalid(
            "batch_too_large",
            None,
            format!(
                "the batch holds {} events; at most {max_batch} are accepted at once",
                items.len()
            ),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| parse_text(item, batch.then_some(i), catalogue, &now))
        .collect()
}

/// One posted item, read as text: its fields `type`, `id` and `time` are
/// decoded, its `data` is kept as the producer's text.
fn parse_text(
    item: &RawValue,
    index: Option<usize>,
    catalogue: Option<&BTreeMap<String, String>>,
    now: &str,
) -> Result<Event, Invalid> {
    let not_object = || invalid("invalid_event", index, "an event must be a JSON object");
    if !item.get().starts_with('{') {
        return Err(not_object());
    }
    // The item is valid JSON already: only its shape can be refused here.
    let posted = serde_json::from_str::<Posted<'_>>(item.get()).map_err(|_| not_object())?;
    check_event(posted.fields, posted.data, index, catalogue, now)
}

/// A posted event object read in one pass: `data` kept as its text, every
/// other member decoded. A repeated member counts once, its last value (as
/// a decoded object keeps it).
struct Posted<'a> {
    fields: Map<String, Value>,
    data: DataIn<'a>,
}

impl<'de> serde::Deserialize<'de> for Posted<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Posted<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Posted<'de>, A::Error> {
                let mut posted = Posted {
                    fields: Map::new(),
                    data: DataIn::Absent,
                };
                while let Some(key) = map.next_key::<String>()? {
                    if key == "data" {
                        posted.data = DataIn::Text(map.next_value()?);
                    } else {
                        posted.fields.insert(key, map.next_value()?);
                    }
                }
                Ok(posted)
            }
        }
        d.deserialize_map(Members)
    }
}

/// §5's rules for events a source made from a producer's body: each item
/// is an event object (`type`, `id`, `time`, `data`); errors name the
/// item's index (`events[3]: …`). One bad event refuses them all.
pub fn check_items(
    items: Vec<Value>,
    catalogue: Option<&BTreeMap<String, String>>,
) -> Result<Vec<Event>, Invalid> {
    let now = crate::event::rfc3339_ms(crate::event::now_ms());
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| parse_one(item, Some(i), catalogue, &now))
        .collect()
}

fn parse_one(
    item: Value,
    index: Option<usize>,
    catalogue: Option<&BTreeMap<String, String>>,
    now: &str,
) -> Result<Event, Invalid> {
    let Value::Object(mut obj) = item else {
        return Err(invalid(
            "invalid_event",
            index,
            "an event must be a JSON object",
        ));
    };
    let data = obj.remove("data").map_or(DataIn::Absent, DataIn::Value);
    check_event(obj, data, index, catalogue, now)
}

/// An event's `data` as it came: decoded (a source built it) or the
/// producer's text.
enum DataIn<'a> {
    Absent,
    Value(Value),
    Text(&'a RawValue),
}

/// §5's rules on an event's fields (`data` taken out of `obj`).
fn check_event(
    mut obj: Map<String, Value>,
    data: DataIn<'_>,
    index: Option<usize>,
    catalogue: Option<&BTreeMap<String, String>>,
    now: &str,
) -> Result<Event, Invalid> {
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "type" | "id" | "time" | "data"))
    {
        return Err(invalid(
            "unknown_field",
            index,
            format!("unknown field {k:?}; an event has type, id, time and data"),
        ));
    }
    let event_type = match obj.remove("type") {
        Some(Value::String(t)) => t,
        Some(_) => return Err(invalid("invalid_type", index, "type must be a string")),
        None => {
            return Err(invalid(
                "missing_type",
                index,
                "the required field type is missing",
            ));
        }
    };
    if !valid_event_type(&event_type) {
        return Err(invalid(
            "invalid_type",
            index,
            format!(
                "type {event_type:?} is not valid: use letters, digits and _ . : - (at most 128)"
            ),
        ));
    }
    if let Some(cat) = catalogue
        && !cat.contains_key(&event_type)
    {
        let known: Vec<&str> = cat.keys().map(String::as_str).collect();
        return Err(invalid(
            "unknown_type",
            index,
            format!(
                "type {event_type:?} is not a declared event type (known: {})",
                known.join(", ")
            ),
        ));
    }
    let id = match obj.remove("id") {
        None | Some(Value::Null) => new_id(),
        Some(Value::String(s))
            if !s.is_empty() && s.len() <= MAX_ID_LEN && !s.chars().any(char::is_control) =>
        {
            s
        }
        Some(Value::String(_)) => {
            return Err(invalid(
                "invalid_id",
                index,
                format!("id must be 1–{MAX_ID_LEN} bytes with no control characters"),
            ));
        }
        Some(_) => return Err(invalid("invalid_id", index, "id must be a string")),
    };
    let time = match obj.remove("time") {
        None | Some(Value::Null) => now.to_owned(),
        Some(Value::String(s)) => {
            // The time crate takes any character between date and time
            // ("2026-11-22Q10:00:00Z"); RFC 3339 has `T` (`t`, or a space per
            // its §5.6 note), and the plugins' parser (relay_sdk::time)
            // refuses the rest, so such an event could never be formatted.
            let rfc3339 = &time::format_description::well_known::Rfc3339;
            let separator_ok = matches!(s.as_bytes().get(10), Some(b'T' | b't' | b' '));
            if !separator_ok || time::OffsetDateTime::parse(&s, rfc3339).is_err() {
                return Err(invalid(
                    "invalid_time",
                    index,
                    format!("time {s:?} is not an RFC 3339 timestamp such as 2026-11-22T10:00:00Z"),
                ));
            }
            s
        }
        Some(_) => {
            return Err(invalid(
                "invalid_time",
                index,
                "time must be an RFC 3339 string",
            ));
        }
    };
    let not_object = || invalid("invalid_data", index, "data must be a JSON object");
    let data = match data {
        DataIn::Absent | DataIn::Value(Value::Null) => Data::from(Value::Object(Map::new())),
        DataIn::Value(v @ Value::Object(_)) => Data::from(v),
        DataIn::Value(_) => return Err(not_object()),
        DataIn::Text(raw) => match raw.get() {
            "null" => Data::from(Value::Object(Map::new())),
            text if text.starts_with('{') => {
                Data::from_text(text.to_owned()).map_err(|_| not_object())?
            }
            _ => return Err(not_object()),
        },
    };
    Ok(Event {
        id,
        event_type,
        time,
        data,
    })
}

/// One entry of the 202 answer.
#[derive(Debug, Clone, Serialize)]
pub struct AcceptedView {
    pub id: String,
    pub deliveries: u32,
    /// True when this id was seen before: nothing new was created.
    pub duplicate: bool,
    /// A repeat within `routing.dedup`'s window: stored, not delivered;
    /// the id of the event it repeats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deduped_into: Option<String>,
}

/// Stores the events and their deliveries durably (one transaction for the
/// whole batch), then offers the deliveries to dispatch.
pub async fn accept(
    store: &Store,
    webhooks: &Webhooks,
    dispatcher: &Dispatcher,
    events: Vec<Event>,
) -> Result<Vec<AcceptedView>, StoreError> {
    let now = crate::event::now_ms();
    let mut digested = false;
    let planned = events
        .into_iter()
        .map(|e| {
            // Routing (DESIGN §17): the deliveries, the digests the event
            // joins and every decision, all written in the accept
            // transaction below (with the dedup key, which the store takes).
            let mut digests = digest::DigestHook::default();
            let mut plan = webhooks.plan(&e, now, &mut digests);
            let suppressed = plan.decisions.iter().any(|d| d.webhook_id.is_none());
            let quiet = !digests.members.is_empty()
                || plan
                    .decisions
                    .iter()
                    .any(|d| d.decision == Decision::Muted.as_str());
            if !suppressed
                && let Some((t, why)) = webhooks.catch_all_at_ingest(&e.id, &plan.targets, quiet)
            {
                plan.decisions.push(store::DecisionRecord {
                    event_id: e.id.clone(),
                    webhook_id: Some(t.webhook_id.clone()),
                    webhook_name: webhooks.get(&t.webhook_id).map(|w| w.spec.name.clone()),
                    decision: Decision::CatchAll.as_str().to_owned(),
                    rule: Some(why.to_owned()),
                    reference: Some(t.delivery_id.clone()),
                    created_at_ms: now,
                });
                plan.targets.push(t);
            }
            digested |= !digests.members.is_empty();
            Ok(store::NewEvent {
                body: store::event_json(&e)?,
                held: history::held_records(&e, &plan.targets),
                dedup: if suppressed {
                    None
                } else {
                    webhooks.routing.dedup_key(&e)
                },
                targets: plan.targets,
                decisions: plan.decisions,
                digests: digests.members,
                event: e,
            })
        })
        .collect::<Result<Vec<store::NewEvent>, StoreError>>()?;
    // Before the write, so the poller cannot offer these deliveries first.
    let reservations: Vec<_> = planned
        .iter()
        .map(|e| dispatcher.reserve(&e.targets))
        .collect();
    // The events go to the store and come back with the results, so they
    // move on to dispatch without a copy.
    let (results, planned) = store.accept(planned).await?;
    incidents(store, dispatcher, &planned, now).await?;
    let events = planned.into_iter().map(|e| e.event);
    crate::metrics::events_accepted(results.iter().filter(|a| !a.duplicate).count() as u64);
    crate::metrics::deliveries_skipped(
        results
            .iter()
            .flat_map(|a| &a.held)
            .filter(|(_, _, start)| *start == store::Start::Skipped)
            .count() as u64,
    );
    let mut views = Vec::with_capacity(results.len());
    if digested {
        dispatcher.poke_digests();
    }
    for ((event, accepted), reserved) in events.zip(results).zip(reservations) {
        // A repeat (dedup) has no delivery: its reservation is dropped.
        if !accepted.duplicate && accepted.deduped_into.is_none() {
            dispatcher.offer_reserved(&Arc::new(event), reserved);
        }
        views.push(AcceptedView {
            id: accepted.id,
            deliveries: accepted.deliveries,
            duplicate: accepted.duplicate,
            deduped_into: accepted.deduped_into,
        });
    }
    Ok(views)
}

/// Records the accepted events' parts in their incidents (DESIGN §19),
/// after the events and before the 202: a crash in between leaves the
/// producer without an answer, and its retry (idempotent on the event id)
/// records the part then.
async fn incidents(
    store: &Store,
    dispatcher: &Dispatcher,
    accepted: &[store::NewEvent],
    now: i64,
) -> Result<(), StoreError> {
    let (config, policies) = dispatcher.incident_settings();
    let mut opened = false;
    for e in accepted {
        let mut warnings = Vec::new();
        let Some(part) = crate::incident::plan(&config, &policies, &e.event, now, &mut warnings)
        else {
            continue;
        };
        let change = store.incident_event(part).await?;
        if let store::IncidentChange::Opened(id) = &change {
            crate::metrics::incident_opened();
            tracing::debug!(incident = %id, event = %e.event.id, "incident opened");
        }
        if let store::IncidentChange::Resolved(_) = &change {
            crate::metrics::incident_resolved();
        }
        opened |= matches!(change, store::IncidentChange::Opened(_));
    }
    if opened {
        dispatcher.poke_escalations();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn a_single_event_gets_defaults_for_id_time_and_data() {
        let e = parse(&bytes(json!({"type": "x"})), None, 10).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].event_type, "x");
        assert!(!e[0].id.is_empty());
        assert!(e[0].time.ends_with('Z'));
        assert_eq!(e[0].data, json!({}));
    }

    #[test]
    fn one_bad_event_refuses_the_batch_and_names_its_index() {
        let e = parse(&bytes(json!([{"type": "a"}, {"data": {}}])), None, 10).unwrap_err();
        assert_eq!((e.code, e.index), ("missing_type", Some(1)));
        assert!(e.to_string().starts_with("events[1]: "), "{e}");
    }

    #[test]
    fn catalogue_refuses_unknown_types_and_lists_known_ones() {
        let mut cat = BTreeMap::new();
        cat.insert("finding_added".to_string(), "x".to_string());
        let e = parse(&bytes(json!({"type": "nope"})), Some(&cat), 10).unwrap_err();
        assert_eq!(e.code, "unknown_type");
        assert!(e.message.contains("finding_added"), "{e}");
    }

    #[test]
    fn malformed_json_bad_time_and_unknown_fields_are_refused() {
        assert_eq!(
            parse(b"{\"type\":", None, 10).unwrap_err().code,
            "malformed_json"
        );
        assert_eq!(
            parse(&bytes(json!({"type": "a", "time": "yesterday"})), None, 10)
                .unwrap_err()
                .code,
            "invalid_time"
        );
        assert_eq!(
            parse(&bytes(json!({"type": "a", "colour": 1})), None, 10)
                .unwrap_err()
                .code,
            "unknown_field"
        );
        assert_eq!(
            parse(&bytes(json!({"type": "a b"})), None, 10)
                .unwrap_err()
                .code,
            "invalid_type"
        );
        assert_eq!(
            parse(&bytes(json!({"type": "a", "data": [1]})), None, 10)
                .unwrap_err()
                .code,
            "invalid_data"
        );
        assert_eq!(
            parse(&bytes(json!([])), None, 10).unwrap_err().code,
            "empty_batch"
        );
        assert_eq!(
            parse(&bytes(json!([{"type": "a"}, {"type": "a"}])), None, 1)
                .unwrap_err()
                .code,
            "batch_too_large"
        );
    }

    /// The producer's `data` is kept as the text it was posted with (its key
    /// order, spacing and escapes), in a single event and in a batch, and
    /// is what the stored body holds; `null` or no data is `{}`.
    #[test]
    fn the_producer_s_data_is_kept_as_its_text_and_stored_as_it_came() {
        let body = br#"[ {"type":"a","data": {"z": 1, "a": ["\u00e9", {"k": null}]}} ,
            {"data":null,"type":"b"}, {"type":"c"} ]"#;
        let events = parse(body, None, 10).unwrap();
        assert_eq!(events.len(), 3);
        let text = r#"{"z": 1, "a": ["\u00e9", {"k": null}]}"#;
        assert_eq!(events[0].data.to_json(), text);
        let stored = store::event_json(&events[0]).unwrap();
        assert!(stored.ends_with(&format!(r#""data":{text}}}"#)), "{stored}");
        assert_eq!(events[0].data, json!({"a": ["é", {"k": null}], "z": 1}));
        assert_eq!(
            (events[1].event_type.as_str(), &*events[1].data),
            ("b", &json!({}))
        );
        assert_eq!(*events[2].data, json!({}));
        let single = parse(br#"  {"type":"a","data":{"b" : 2}}  "#, None, 10).unwrap();
        assert_eq!(single[0].data.to_json(), r#"{"b" : 2}"#);
        for bad in [
            r#"{"type":"a","data":"x"}"#,
            r#"{"type":"a","data":[1]}"#,
            r#"{"type":"a","data":3}"#,
        ] {
            let e = parse(bad.as_bytes(), None, 10).unwrap_err();
            assert_eq!(e.code, "invalid_data", "{bad}");
        }
        for bad in ["[1]", "\"text\"", "[{\"type\":\"a\"}, 2]"] {
            let e = parse(bad.as_bytes(), None, 10).unwrap_err();
            assert_eq!(e.code, "invalid_event", "{bad}");
        }
        let e = parse(b"\xff", None, 10).unwrap_err();
        assert_eq!(e.code, "malformed_json");
    }

    /// A body is refused when it nests deeper than a decoded tree may
    /// (as before data was kept as text), and accepted up to that depth
    /// with its data decodable; brackets inside strings do not count.
    #[test]
    fn a_body_nested_deeper_than_a_tree_may_be_is_refused_and_one_as_deep_decodes() {
        let nested = |levels: usize| {
            format!(
                r#"{{"type":"a","data":{{"k":{}1{}}}}}"#,
                "[".repeat(levels),
                "]".repeat(levels)
            )
        };
        // The event object and data are two levels: 125 more make 127, the
        // deepest body serde_json decodes.
        assert!(serde_json::from_str::<Value>(&nested(125)).is_ok());
        assert!(serde_json::from_str::<Value>(&nested(126)).is_err());
        let e = parse(nested(126).as_bytes(), None, 10).unwrap_err();
        assert_eq!(e.code, "malformed_json");
        assert!(e.message.contains("more than 127 deep"), "{e}");
        let ok = parse(nested(125).as_bytes(), None, 10).unwrap();
        let mut v = ok[0].data.member("k").expect("k decodes");
        for _ in 0..124 {
            v = &v[0];
        }
        assert_eq!(v, &json!([1]));
        assert!(!ok[0].data.is_null());
        let brackets = format!(
            r#"{{"type":"a","data":{{"s":"{}\\\"{}"}}}}"#,
            "[".repeat(300),
            "{".repeat(300)
        );
        assert!(parse(brackets.as_bytes(), None, 10).is_ok());
    }

    /// The depth scan skips strings with `memchr`; it agrees with a scan
    /// of every byte on any text, strings, escapes and brackets included.
    #[test]
    fn the_depth_scan_agrees_with_a_byte_at_a_time_scan() {
        fn bytewise(text: &str, limit: usize) -> bool {
            let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
            for b in text.bytes() {
                if in_string {
                    match b {
                        _ if escaped => escaped = false,
                        b'\\' => escaped = true,
                        b'"' => in_string = false,
                        _ => {}
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'[' | b'{' => {
                        depth += 1;
                        if depth > limit {
                            return true;
                        }
                    }
                    b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
            false
        }
        use proptest::prelude::*;
        let text = proptest::collection::vec(
            prop_oneof![
                Just('"'),
                Just('\\'),
                Just('['),
                Just(']'),
                Just('{'),
                Just('}'),
                Just('a'),
                Just(' ')
            ],
            0..64,
        )
        .prop_map(|cs| cs.into_iter().collect::<String>());
        proptest!(ProptestConfig::with_cases(4000), |(text in text, limit in 0usize..6)| {
            prop_assert_eq!(nests_deeper_than(&text, limit), bytewise(&text, limit), "{:?}", text);
        });
    }

    /// Found by fuzzing (fuzz/ `ingest`): the time crate accepted any
    /// character between date and time, so ingest stored events that the
    /// cef and syslog formatters then failed on every delivery.
    #[test]
    fn a_time_is_refused_unless_t_or_a_space_separates_date_and_time() {
        for bad in [
            "2026-11-22Q10:00:00Z",
            "2026-11-22a10:00:00.123456+02:00",
            "2026-11-22010:00:00Z",
        ] {
            let e = parse(&bytes(json!({"type": "a", "time": bad})), None, 10).unwrap_err();
            assert_eq!(e.code, "invalid_time", "{bad}");
        }
        for good in [
            "2026-11-22T10:00:00Z",
            "2026-11-22t10:00:00.5+02:00",
            "2026-11-22 10:00:00Z",
        ] {
            let e = parse(&bytes(json!({"type": "a", "time": good})), None, 10).unwrap();
            assert_eq!(e[0].time, good);
        }
    }
}
