//! Evaluating compiled matchers (`config::Matcher`, DESIGN §17) against
//! events.
//!
//! Owns: what a condition means for an event's value — equality as text
//! (strings case-insensitive, `"5"` = `5`, a list in the event matches when
//! one item does), `regex` on the text of a scalar, `exists` (present and
//! not null), `at_least` on the severity order. Allocation-free for strings.

use serde_json::Value;

use crate::config::Matcher;
use crate::config::matcher::{Clause, Cond, Field, severity_rank};
use crate::event::Event;

/// A field's value in an event.
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    Str(&'a str),
    Json(&'a Value),
}

/// The value of `field` in `event`, if present.
pub fn lookup<'a>(event: &'a Event, field: &Field) -> Option<Val<'a>> {
    match field {
        Field::Type => Some(Val::Str(&event.event_type)),
        Field::Id => Some(Val::Str(&event.id)),
        Field::Data(path) => event
            .data
            .path(path.iter().map(String::as_str))
            .map(Val::Json),
    }
}

/// Whether `event` satisfies the matcher.
pub fn matches(m: &Matcher, event: &Event) -> bool {
    first_failure(m.root(), event).is_none()
}

/// The first field (as written, `any` for the OR list) whose condition the
/// event does not meet, or `None` when the matcher holds: what an
/// explanation names.
pub fn failing_field(m: &Matcher, event: &Event) -> Option<String> {
    first_failure(m.root(), event)
}

fn first_failure(c: &Clause, event: &Event) -> Option<String> {
    for (field, cond) in &c.all {
        if !holds(cond, lookup(event, field)) {
            return Some(field.name());
        }
    }
    if !c.any.is_empty() && !c.any.iter().any(|a| first_failure(a, event).is_none()) {
        return Some("any".into());
    }
    None
}

/// Whether a condition holds for a field's value (`None`: absent).
pub fn holds(cond: &Cond, v: Option<Val<'_>>) -> bool {
    match cond {
        Cond::Not(inner) => !holds(inner, v),
        Cond::AnyOf(list) => list.iter().any(|c| holds(c, v)),
        Cond::Exists(want) => {
            let present = match v {
                None | Some(Val::Json(Value::Null)) => false,
                Some(_) => true,
            };
            present == *want
        }
        Cond::Eq(text) => v.is_some_and(|v| any_scalar(v, &mut |s| s.eq_ignore_ascii_case(text))),
        Cond::Regex(re) => v.is_some_and(|v| any_scalar(v, &mut |s| re.is_match(s))),
        Cond::AtLeast(rank) => {
            v.is_some_and(|v| any_scalar(v, &mut |s| severity_rank(s).is_some_and(|r| r >= *rank)))
        }
    }
}

/// Calls `f` on the text of the value (or of each item of a list, at any
/// depth) until it answers true. Strings as they are, numbers and booleans
/// as written; null and maps have no text.
fn any_scalar(v: Val<'_>, f: &mut dyn FnMut(&str) -> bool) -> bool {
    match v {
        Val::Str(s) => f(s),
        Val::Json(Value::String(s)) => f(s),
        Val::Json(Value::Number(n)) => f(&n.to_string()),
        Val::Json(Value::Bool(b)) => f(if *b { "true" } else { "false" }),
        Val::Json(Value::Array(items)) => items.iter().any(|i| any_scalar(Val::Json(i), f)),
        Val::Json(_) => false,
    }
}

/// The lower-case texts a value is indexed by (each item of a list).
pub fn index_texts(v: Val<'_>, out: &mut Vec<String>) {
    match v {
        Val::Str(s) => out.push(s.to_ascii_lowercase()),
        Val::Json(Value::Array(items)) => items.iter().for_each(|i| index_texts(Val::Json(i), out)),
        Val::Json(j) => out.extend(crate::config::matcher::scalar_text(j)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn ev(t: &str, data: Value) -> Event {
        Event {
            id: "evt-1".into(),
            event_type: t.into(),
            time: "2026-01-01T00:00:00Z".into(),
            data: data.into(),
        }
    }

    fn m(v: Value) -> Matcher {
        Matcher::parse(v).unwrap()
    }

    #[test]
    fn equality_is_case_insensitive_and_compares_numbers_as_text() {
        let e = ev(
            "x",
            json!({"severity": "Critical", "cvss": 9, "tags": ["a", "B"]}),
        );
        assert!(matches(&m(json!({"severity": "critical"})), &e));
        assert!(matches(&m(json!({"cvss": "9"})), &e));
        assert!(matches(&m(json!({"tags": "b"})), &e));
        assert!(!matches(&m(json!({"severity": "high"})), &e));
        assert!(!matches(&m(json!({"missing": "x"})), &e));
    }

    #[test]
    fn operators_not_regex_exists_at_least_and_any() {
        let e = ev(
            "finding",
            json!({"severity": "high", "host": "db-01", "n": null}),
        );
        assert!(matches(&m(json!({"severity": {"at_least": "medium"}})), &e));
        assert!(!matches(
            &m(json!({"severity": {"at_least": "critical"}})),
            &e
        ));
        assert!(
            !matches(&m(json!({"host": {"at_least": "info"}})), &e),
            "unknown level never matches"
        );
        assert!(matches(&m(json!({"host": {"regex": "^db-\\d+$"}})), &e));
        assert!(matches(
            &m(json!({"host": {"not": ["web-01", "web-02"]}})),
            &e
        ));
        assert!(matches(
            &m(json!({"n": {"exists": false}, "host": {"exists": true}})),
            &e
        ));
        assert!(matches(&m(json!({"type": "FINDING", "id": "evt-1"})), &e));
        assert!(matches(
            &m(json!({"any": [{"severity": "low"}, {"host": "db-01"}]})),
            &e
        ));
        assert!(!matches(
            &m(json!({"any": [{"severity": "low"}, {"host": "x"}]})),
            &e
        ));
        assert_eq!(
            failing_field(&m(json!({"host": "db-01", "severity": "low"})), &e).as_deref(),
            Some("severity")
        );
    }

    // -- property test: compiled matchers agree with a reference evaluator

    /// The reference: reads the matcher's JSON directly, no compilation.
    fn reference(matcher: &Value, e: &Event) -> bool {
        let Value::Object(map) = matcher else {
            return false;
        };
        map.iter().all(|(k, c)| {
            if k == "any" {
                return c
                    .as_array()
                    .is_some_and(|l| l.iter().any(|x| reference(x, e)));
            }
            let val: Option<Value> = match k.as_str() {
                "type" => Some(json!(e.event_type)),
                "id" => Some(json!(e.id)),
                path => {
                    let mut cur = Some(&*e.data);
                    for seg in path.split('.') {
                        cur = cur.and_then(|v| match v {
                            Value::Object(o) => o.get(seg),
                            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                            _ => None,
                        });
                    }
                    cur.cloned()
                }
            };
            ref_cond(c, val.as_ref())
        })
    }

    fn texts(v: &Value) -> Vec<String> {
        match v {
            Value::String(s) => vec![s.to_lowercase()],
            Value::Number(n) => vec![n.to_string()],
            Value::Bool(b) => vec![b.to_string()],
            Value::Array(a) => a.iter().flat_map(texts).collect(),
            _ => vec![],
        }
    }

    fn ref_cond(c: &Value, v: Option<&Value>) -> bool {
        let levels = ["info", "low", "medium", "high", "critical"];
        let rank = |s: &str| levels.iter().position(|l| *l == s);
        match c {
            Value::Array(l) => l.iter().any(|x| ref_cond(x, v)),
            Value::Object(o) => {
                let (op, arg) = o.iter().next().unwrap();
                match op.as_str() {
                    "not" => !ref_cond(arg, v),
                    "exists" => v.is_some_and(|x| !x.is_null()) == arg.as_bool().unwrap(),
                    "regex" => {
                        let re = regex::Regex::new(arg.as_str().unwrap()).unwrap();
                        v.is_some_and(|x| match x {
                            Value::String(s) => re.is_match(s),
                            other => texts(other).iter().any(|t| re.is_match(t)),
                        })
                    }
                    "at_least" => {
                        let want = rank(arg.as_str().unwrap()).unwrap();
                        v.is_some_and(|x| {
                            texts(x).iter().any(|t| rank(t).is_some_and(|r| r >= want))
                        })
                    }
                    _ => unreachable!(),
                }
            }
            scalar => {
                let want = texts(scalar);
                v.is_some_and(|x| texts(x).iter().any(|t| want.contains(t)))
            }
        }
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            prop::sample::select(vec![
                "high", "LOW", "Critical", "medium", "info", "acme", "x", "9"
            ])
            .prop_map(|s| json!(s)),
            (0i64..12).prop_map(|n| json!(n)),
            any::<bool>().prop_map(|b| json!(b)),
        ]
    }

    fn cond() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            scalar(),
            prop::collection::vec(scalar(), 1..3).prop_map(Value::Array),
            prop::sample::select(vec!["^h", "(?i)crit", "9$", "^a.m"])
                .prop_map(|r| json!({"regex": r})),
            any::<bool>().prop_map(|b| json!({"exists": b})),
            prop::sample::select(vec!["info", "low", "medium", "high", "critical"])
                .prop_map(|l| json!({"at_least": l})),
        ];
        leaf.prop_recursive(2, 6, 2, |inner| inner.prop_map(|c| json!({"not": c})))
    }

    fn fields() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "severity",
            "tenant",
            "type",
            "finding.host",
            "tags",
            "n",
        ])
        .prop_map(str::to_owned)
    }

    fn matcher() -> impl Strategy<Value = Value> {
        let flat = prop::collection::btree_map(fields(), cond(), 1..3)
            .prop_map(|m| Value::Object(m.into_iter().collect()));
        flat.prop_recursive(2, 8, 2, |inner| {
            (
                prop::collection::vec(inner, 1..3),
                prop::collection::btree_map(fields(), cond(), 0..2),
            )
                .prop_map(|(any, rest)| {
                    let mut o: serde_json::Map<String, Value> = rest.into_iter().collect();
                    o.insert("any".into(), Value::Array(any));
                    Value::Object(o)
                })
        })
    }

    fn event() -> impl Strategy<Value = Event> {
        (
            prop::sample::select(vec!["finding", "HIGH", "alert"]),
            prop::option::of(scalar()),
            prop::option::of(scalar()),
            prop::option::of(scalar()),
            prop::collection::vec(scalar(), 0..3),
            any::<bool>(),
        )
            .prop_map(|(t, sev, tenant, host, tags, null_n)| {
                let mut data = serde_json::Map::new();
                if let Some(s) = sev {
                    data.insert("severity".into(), s);
                }
                if let Some(s) = tenant {
                    data.insert("tenant".into(), s);
                }
                if let Some(h) = host {
                    data.insert("finding".into(), json!({"host": h}));
                }
                data.insert("tags".into(), Value::Array(tags));
                if null_n {
                    data.insert("n".into(), Value::Null);
                }
                ev(t, Value::Object(data))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn compiled_matchers_agree_with_the_reference_evaluator(mv in matcher(), e in event()) {
            let compiled = Matcher::parse(mv.clone()).unwrap();
            prop_assert_eq!(matches(&compiled, &e), reference(&mv, &e), "matcher {} event {:?}", mv, e.data);
        }
    }
}
