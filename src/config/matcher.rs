//! Matchers (DESIGN §17): the one way a rule selects events — a webhook's
//! `filter`, a suppression rule's `match`, a digest's `immediate`.
//!
//! A matcher is a map of field → condition, all of which must hold. A field
//! is `type`, `id`, or a dotted path into `data` (`severity`,
//! `finding.host`); the key `any` holds a list of matchers of which one
//! must hold. A condition is a scalar (equal; strings case-insensitive,
//! `"5"` equals `5`), a list (any of its conditions), or one of
//! `{not: …}`, `{regex: "…"}`, `{exists: true|false}`,
//! `{at_least: high}` (`info < low < medium < high < critical`; a value
//! outside that order never matches).
//!
//! Owns: the syntax and its checks. Parsing compiles a matcher once (regexes
//! built, scalars normalised, levels ranked), so a bad one is refused where
//! it is read: by the YAML parser with `file:line:col`, by the API with a
//! 422 naming the field. Evaluating one is `crate::route::matcher`'s.
//! Plain data: imports no sibling module.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Severity levels in order; `at_least` compares ranks.
pub const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

/// The rank of a severity name (case-insensitive), `None` when unknown.
pub fn severity_rank(s: &str) -> Option<u8> {
    SEVERITIES
        .iter()
        .position(|l| l.eq_ignore_ascii_case(s))
        .map(|i| i as u8)
}

/// A compiled matcher and the JSON it was written as (kept to serialize it
/// back unchanged: API webhooks are stored as their spec).
#[derive(Debug, Clone)]
pub struct Matcher {
    source: Value,
    root: Clause,
}

/// One map: every condition holds, and one matcher of each `any` list.
#[derive(Debug, Clone)]
pub struct Clause {
    pub all: Vec<(Field, Cond)>,
    /// The `any:` list (empty: no `any`).
    pub any: Vec<Clause>,
}

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    Type,
    Id,
    /// A dotted path into `data` (array items by index).
    Data(Vec<String>),
}

impl Field {
    fn parse(key: &str) -> Field {
        match key {
            "type" => Field::Type,
            "id" => Field::Id,
            path => Field::Data(path.split('.').map(str::to_owned).collect()),
        }
    }

    /// The field as written.
    pub fn name(&self) -> String {
        match self {
            Field::Type => "type".into(),
            Field::Id => "id".into(),
            Field::Data(p) => p.join("."),
        }
    }
}

/// A condition on one field's value.
#[derive(Debug, Clone)]
pub enum Cond {
    /// Equal to this scalar's text (lower-case; numbers and booleans as
    /// written).
    Eq(String),
    /// Any of these.
    AnyOf(Vec<Cond>),
    Not(Box<Cond>),
    Regex(regex::Regex),
    Exists(bool),
    /// Severity rank at least this.
    AtLeast(u8),
}

impl Cond {
    /// The values of a pure equality condition (a scalar, or a list of
    /// scalars): what an index can look events up by.
    pub fn equal_values(&self) -> Option<Vec<&str>> {
        match self {
            Cond::Eq(s) => Some(vec![s.as_str()]),
            Cond::AnyOf(list) if !list.is_empty() => {
                let mut out = Vec::with_capacity(list.len());
                for c in list {
                    out.extend(c.equal_values()?);
                }
                Some(out)
            }
            _ => None,
        }
    }
}

/// Why a matcher was refused: where in it (`severity.at_least`,
/// `any[1].host`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct MatcherError {
    pub path: String,
    pub message: String,
}

fn refuse<T>(path: &str, message: impl Into<String>) -> Result<T, MatcherError> {
    Err(MatcherError {
        path: path.to_owned(),
        message: message.into(),
    })
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The lower-case text a scalar is compared by; `None` for null, lists and
/// maps.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_ascii_lowercase()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Largest regex program a matcher may build (bytes): a pattern is
/// operator-written, but a huge one costs every event.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl Matcher {
    /// Compiles a matcher from its JSON form.
    pub fn parse(value: Value) -> Result<Matcher, MatcherError> {
        let root = clause(&value, "")?;
        Ok(Matcher {
            source: value,
            root,
        })
    }

    pub fn root(&self) -> &Clause {
        &self.root
    }

    /// The matcher as written.
    pub fn source(&self) -> &Value {
        &self.source
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

fn clause(value: &Value, path: &str) -> Result<Clause, MatcherError> {
    let Value::Object(map) = value else {
        return refuse(
            path,
            format!(
                "a matcher is a map of field → condition (such as {{severity: high}}), not {}",
                kind(value)
            ),
        );
    };
    let mut out = Clause {
        all: Vec::new(),
        any: Vec::new(),
    };
    for (key, cond_value) in map {
        if key == "any" {
            let any_path = join(path, "any");
            let Value::Array(items) = cond_value else {
                return refuse(&any_path, "takes a list of matchers");
            };
            if items.is_empty() {
                return refuse(
                    &any_path,
                    "an empty list never matches; give at least one matcher",
                );
            }
            for (i, item) in items.iter().enumerate() {
                out.any.push(clause(item, &format!("{any_path}[{i}]"))?);
            }
            continue;
        }
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return refuse(
                &join(path, key),
                "a field is type, id or a dotted data path such as finding.host",
            );
        }
        out.all
            .push((Field::parse(key), cond(cond_value, &join(path, key))?));
    }
    Ok(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

const OPERATORS: &str = "not, regex, exists, at_least";

fn cond(value: &Value, path: &str) -> Result<Cond, MatcherError> {
    match value {
        Value::Null => refuse(
            path,
            "null matches nothing; use {exists: false} for a missing field",
        ),
        Value::Array(items) => {
            if items.is_empty() {
                return refuse(path, "an empty list never matches; give at least one value");
            }
            let list = items
                .iter()
                .enumerate()
                .map(|(i, v)| cond(v, &format!("{path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Cond::AnyOf(list))
        }
        Value::Object(map) => {
            let mut ops = map.iter();
            let (Some((op, arg)), None) = (ops.next(), ops.next()) else {
                return refuse(
                    path,
                    format!(
                        "a condition map holds exactly one operator ({OPERATORS}); combine several with a list or any:"
                    ),
                );
            };
            let op_path = join(path, op);
            match op.as_str() {
                "not" => Ok(Cond::Not(Box::new(cond(arg, &op_path)?))),
                "regex" => {
                    let Value::String(pattern) = arg else {
                        return refuse(&op_path, "takes a regular expression as a string");
                    };
                    regex::RegexBuilder::new(pattern)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map(Cond::Regex)
                        .or_else(|e| {
                            let first = e.to_string();
                            let last = first.lines().last().unwrap_or("").trim().to_owned();
                            refuse(
                                &op_path,
                                format!("{pattern:?} is not a valid regular expression: {last}"),
                            )
                        })
                }
                "exists" => match arg {
                    Value::Bool(b) => Ok(Cond::Exists(*b)),
                    other => refuse(
                        &op_path,
                        format!("takes true or false, not {}", kind(other)),
                    ),
                },
                "at_least" => {
                    let rank = arg.as_str().and_then(severity_rank);
                    match rank {
                        Some(r) => Ok(Cond::AtLeast(r)),
                        None => refuse(
                            &op_path,
                            format!(
                                "{arg} is not a severity; use one of {}",
                                SEVERITIES.join(", ")
                            ),
                        ),
                    }
                }
                other => refuse(
                    &op_path,
                    format!("unknown operator {other:?}; a condition map takes one of {OPERATORS}"),
                ),
            }
        }
        scalar => match scalar_text(scalar) {
            Some(t) => Ok(Cond::Eq(t)),
            None => refuse(path, "not a value to compare with"),
        },
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Matcher::parse(value).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(value: Value, path: &str, message_has: &str) {
        let e = Matcher::parse(value.clone()).unwrap_err();
        assert_eq!(e.path, path, "{value}: {e}");
        assert!(e.message.contains(message_has), "{value}: {e}");
    }

    #[test]
    fn a_bad_regex_is_refused_naming_its_field() {
        check(
            json!({"host": {"regex": "(unclosed"}}),
            "host.regex",
            "not a valid regular expression",
        );
    }

    #[test]
    fn an_unknown_operator_is_refused_and_the_known_ones_listed() {
        check(
            json!({"severity": {"at_lest": "high"}}),
            "severity.at_lest",
            "unknown operator \"at_lest\"",
        );
        check(
            json!({"severity": {"at_least": "high", "not": "x"}}),
            "severity",
            "exactly one operator",
        );
        check(json!({"severity": {}}), "severity", "exactly one operator");
    }

    #[test]
    fn at_least_on_an_unknown_level_is_refused() {
        check(
            json!({"severity": {"at_least": "urgent"}}),
            "severity.at_least",
            "not a severity; use one of info, low, medium, high, critical",
        );
        check(
            json!({"severity": {"at_least": 3}}),
            "severity.at_least",
            "not a severity",
        );
    }

    #[test]
    fn an_empty_any_or_an_empty_list_is_refused() {
        check(json!({"any": []}), "any", "empty list never matches");
        check(json!({"any": {"a": 1}}), "any", "takes a list of matchers");
        check(json!({"tenant": []}), "tenant", "empty list never matches");
    }

    #[test]
    fn a_matcher_that_is_not_a_map_is_refused() {
        check(json!([1, 2]), "", "a matcher is a map");
        check(json!("high"), "", "not a string");
        check(
            json!({"any": [{"a": 1}, "x"]}),
            "any[1]",
            "a matcher is a map",
        );
    }

    #[test]
    fn exists_takes_a_boolean_regex_a_string_and_null_is_refused() {
        check(json!({"a": {"exists": "yes"}}), "a.exists", "true or false");
        check(json!({"a": {"regex": 5}}), "a.regex", "as a string");
        check(json!({"a": null}), "a", "exists: false");
        check(json!({"a..b": 1}), "a..b", "dotted data path");
    }

    #[test]
    fn refusals_deep_inside_name_the_whole_path() {
        check(
            json!({"any": [{"a": 1}, {"b": {"not": {"regex": "["}}}]}),
            "any[1].b.not.regex",
            "regular expression",
        );
    }

    #[test]
    fn a_matcher_serializes_back_as_written() {
        let v = json!({"severity": {"at_least": "high"}, "tenant": ["a", "b"]});
        let m = Matcher::parse(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&m).unwrap(), v);
        assert_eq!(m.root().all.len(), 2);
    }
}
