//! Any JSON, mapped by RFC 6901 pointers (`map:`).
//!
//! Owns: what each pointer may find and what is refused.
//!
//! The items: the array `map.events` points at; without it, the body's
//! elements when it is an array, else the body itself. In each item:
//!
//! - type: the string at `map.type`, else the source's fixed `type`;
//! - id: the string (or number) at `map.id`. Without `map.id` every event
//!   gets a fresh id (no deduplication). With it, an item without a value
//!   there is refused: a producer meant to give ids would otherwise be
//!   silently duplicated on every re-send;
//! - time: the RFC 3339 string at `map.time`; the time of receipt when
//!   `map.time` is not given or finds nothing;
//! - data: the object at `map.data` (default: the whole item).

use serde_json::Value;

use super::{Problem, event_object};
use crate::config::{JsonPointer, SourceMap};

pub(super) struct Generic {
    map: SourceMap,
    fixed_type: Option<String>,
}

fn at<'v>(item: &'v Value, p: &JsonPointer) -> Option<&'v Value> {
    item.pointer(p.as_str()).filter(|v| !v.is_null())
}

fn invalid(message: String) -> Problem {
    ("invalid_payload", message)
}

impl Generic {
    pub(super) fn new(map: SourceMap, fixed_type: Option<String>) -> Generic {
        Generic { map, fixed_type }
    }

    pub(super) fn items(&self, body: Value) -> Result<Vec<Value>, Problem> {
        let items = match &self.map.events {
            Some(p) => match body.pointer(p.as_str()) {
                Some(Value::Array(a)) => a.clone(),
                Some(_) => {
                    return Err(invalid(format!(
                        "map.events {:?} does not point at an array in the body",
                        p.as_str()
                    )));
                }
                None => {
                    return Err(invalid(format!(
                        "map.events {:?} finds nothing in the body",
                        p.as_str()
                    )));
                }
            },
            None => match body {
                Value::Array(a) => a,
                one => vec![one],
            },
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| self.item(i, item))
            .collect()
    }

    fn item(&self, i: usize, item: &Value) -> Result<Value, Problem> {
        let m = &self.map;
        let event_type = match m.event_type.as_ref().map(|p| (p, at(item, p))) {
            Some((_, Some(Value::String(t)))) => t.clone(),
            Some((p, Some(other))) => {
                return Err(invalid(format!(
                    "item {i}: the type at {:?} is {other}, not a string",
                    p.as_str()
                )));
            }
            Some((p, None)) => match &self.fixed_type {
                Some(t) => t.clone(),
                None => {
                    return Err(invalid(format!("item {i}: no type at {:?}", p.as_str())));
                }
            },
            None => self.fixed_type.clone().unwrap_or_default(),
        };
        let id = match m.id.as_ref().map(|p| (p, at(item, p))) {
            None => None,
            Some((_, Some(Value::String(s)))) => Some(s.clone()),
            Some((_, Some(Value::Number(n)))) => Some(n.to_string()),
            Some((p, Some(other))) => {
                return Err(invalid(format!(
                    "item {i}: the id at {:?} is {other}, not a string or number",
                    p.as_str()
                )));
            }
            Some((p, None)) => {
                return Err(invalid(format!(
                    "item {i}: no id at {:?} (map.id is set, so every event must carry one)",
                    p.as_str()
                )));
            }
        };
        let time = match m.time.as_ref().and_then(|p| at(item, p).map(|v| (p, v))) {
            None => None,
            Some((_, Value::String(s))) => Some(s.clone()),
            Some((p, other)) => {
                return Err(invalid(format!(
                    "item {i}: the time at {:?} is {other}, not an RFC 3339 string",
                    p.as_str()
                )));
            }
        };
        let data_pointer = m.data.as_ref().map_or("", JsonPointer::as_str);
        let data = match item.pointer(data_pointer) {
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => {
                return Err(invalid(format!(
                    "item {i}: the data at {data_pointer:?} is not a JSON object"
                )));
            }
            None => {
                return Err(invalid(format!("item {i}: no data at {data_pointer:?}")));
            }
        };
        Ok(event_object(&event_type, id, time, data))
    }
}
