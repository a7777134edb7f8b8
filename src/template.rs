//! JSON body templates with `{{variable}}` placeholders (DESIGN.md §7).
//!
//! A template is parsed once into a [`Template`] tree. Rendering walks the
//! tree against an event: substitution happens *inside* JSON string values,
//! so the result is always valid JSON whatever the event contains. A string
//! that is exactly one placeholder takes the value's own JSON type.
//!
//! Owns: template parsing and rendering. Pure: no I/O.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::event::{Data, Event};

/// A variable reference: `type`, `id`, `time`, `data.x.y`, or a bare path
/// into `data` (`tenant_name`, `finding.severity`).
#[derive(Debug, Clone, PartialEq)]
struct Path(Vec<String>);

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Var(Path),
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// No placeholder anywhere below: emitted as is.
    Static(Value),
    /// A string mixing literals and placeholders.
    Text(Vec<Part>),
    /// A string that is exactly one placeholder: typed insertion.
    Lone(Path),
    Array(Vec<Node>),
    Object(Vec<(Vec<Part>, Node)>),
}

/// A compiled body template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    root: Node,
}

/// The event fields a template can see.
pub struct Vars<'a> {
    pub id: &'a str,
    pub event_type: &'a str,
    pub time: &'a str,
    pub data: &'a Data,
}

impl<'a> Vars<'a> {
    /// What a template sees of `event`.
    pub fn of(event: &'a Event) -> Vars<'a> {
        Vars {
            id: &event.id,
            event_type: &event.event_type,
            time: &event.time,
            data: &event.data,
        }
    }
}

impl Template {
    pub fn compile(template: &Value) -> Template {
        Template {
            root: compile(template),
        }
    }

    /// Renders the template. Unknown variables render empty and are named in
    /// the returned warnings (once each).
    pub fn render(&self, vars: &Vars<'_>) -> (Value, Vec<String>) {
        let mut warnings = Vec::new();
        let v =
            serde_json::to_value(render(&self.root, vars, &mut warnings)).unwrap_or(Value::Null);
        (v, warnings)
    }

    /// Renders the template straight to JSON bytes (what a delivery sends),
    /// borrowing the event's values instead of copying them into a `Value`.
    pub fn render_json(
        &self,
        vars: &Vars<'_>,
    ) -> Result<(Vec<u8>, Vec<String>), serde_json::Error> {
        let mut warnings = Vec::new();
        let bytes = serde_json::to_vec(&render(&self.root, vars, &mut warnings))?;
        Ok((bytes, warnings))
    }
}

/// Renders a string with placeholders (used for header values).
pub fn render_text(text: &str, vars: &Vars<'_>, warnings: &mut Vec<String>) -> String {
    match parse_parts(text) {
        Some(parts) => render_parts(&parts, vars, warnings),
        None => text.to_owned(),
    }
}

fn compile(v: &Value) -> Node {
    match v {
        Value::String(s) => match parse_parts(s) {
            None => Node::Static(v.clone()),
            Some(parts) => match parts.as_slice() {
                [Part::Var(p)] => Node::Lone(p.clone()),
                _ => Node::Text(parts),
            },
        },
        Value::Array(items) => {
            let nodes: Vec<Node> = items.iter().map(compile).collect();
            if nodes.iter().all(|n| matches!(n, Node::Static(_))) {
                Node::Static(v.clone())
            } else {
                Node::Array(nodes)
            }
        }
        Value::Object(map) => {
            let entries: Vec<(Vec<Part>, Node)> = map
                .iter()
                .map(|(k, v)| {
                    let key = parse_parts(k).unwrap_or_else(|| vec![Part::Lit(k.clone())]);
                    (key, compile(v))
                })
                .collect();
            let all_static = entries.iter().all(|(k, n)| {
                matches!(k.as_slice(), [Part::Lit(_)]) && matches!(n, Node::Static(_))
            });
            if all_static {
                Node::Static(v.clone())
            } else {
                Node::Object(entries)
            }
        }
        other => Node::Static(other.clone()),
    }
}

/// Splits a string into literal and placeholder parts; `None` when it has no
/// placeholder. An unclosed `{{` is literal text.
fn parse_parts(s: &str) -> Option<Vec<Part>> {
    if !s.contains("{{") {
        return None;
    }
    let mut parts = Vec::new();
    let mut rest = s;
    let mut lit = String::new();
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        let name = after[..close].trim();
        if name.is_empty() || name.contains(['{', '}']) {
            lit.push_str(&rest[..open + 2]);
            rest = after;
            continue;
        }
        lit.push_str(&rest[..open]);
        if !lit.is_empty() {
            parts.push(Part::Lit(std::mem::take(&mut lit)));
        }
        parts.push(Part::Var(Path(
            name.split('.').map(str::to_owned).collect(),
        )));
        rest = &after[close + 2..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    parts
        .iter()
        .any(|p| matches!(p, Part::Var(_)))
        .then_some(parts)
}

fn lookup<'a>(path: &Path, vars: &Vars<'a>) -> Option<LookedUp<'a>> {
    let segs = &path.0;
    let first = segs.first()?.as_str();
    if segs.len() == 1 {
        match first {
            "type" | "event_type" => return Some(LookedUp::Str(vars.event_type)),
            "id" | "event_id" => return Some(LookedUp::Str(vars.id)),
            "time" | "timestamp" => return Some(LookedUp::Str(vars.time)),
            "data" => return Some(LookedUp::Data(vars.data)),
            _ => {}
        }
    }
    let path = if first == "data" && segs.len() > 1 {
        &segs[1..]
    } else {
        &segs[..]
    };
    // The top-level member first: data kept as text decodes only that one.
    vars.data
        .path(path.iter().map(String::as_str))
        .map(LookedUp::Json)
}

enum LookedUp<'v> {
    Str(&'v str),
    Json(&'v Value),
    /// The whole data: written out as it is (text stays text).
    Data(&'v Data),
}

fn warn_unknown(path: &Path, warnings: &mut Vec<String>) {
    let msg = format!(
        "unknown template variable {{{{{}}}}} rendered empty",
        path.0.join(".")
    );
    if !warnings.contains(&msg) {
        warnings.push(msg);
    }
}

fn render_parts(parts: &[Part], vars: &Vars<'_>, warnings: &mut Vec<String>) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Lit(s) => out.push_str(s),
            Part::Var(path) => match lookup(path, vars) {
                Some(LookedUp::Str(s)) => out.push_str(s),
                Some(LookedUp::Data(d)) => match &**d {
                    Value::String(s) => out.push_str(s),
                    Value::Null => {}
                    _ => out.push_str(&d.to_json()),
                },
                Some(LookedUp::Json(Value::String(s))) => out.push_str(s),
                Some(LookedUp::Json(Value::Null)) => {}
                Some(LookedUp::Json(v)) => out.push_str(&v.to_string()),
                None => warn_unknown(path, warnings),
            },
        }
    }
    out
}

/// A rendered template that borrows what it can from the template and the
/// event. Objects keep serde_json's own `Map` semantics (keys sorted, a
/// repeated rendered key keeps the last value).
enum Rendered<'a> {
    Json(&'a Value),
    Data(&'a Data),
    Str(std::borrow::Cow<'a, str>),
    Array(Vec<Rendered<'a>>),
    Object(BTreeMap<String, Rendered<'a>>),
}

impl Serialize for Rendered<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Rendered::Json(v) => v.serialize(s),
            Rendered::Data(d) => d.serialize(s),
            Rendered::Str(t) => s.serialize_str(t),
            Rendered::Array(items) => items.serialize(s),
            Rendered::Object(entries) => entries.serialize(s),
        }
    }
}

fn render<'a>(node: &'a Node, vars: &Vars<'a>, warnings: &mut Vec<String>) -> Rendered<'a> {
    match node {
        Node::Static(v) => Rendered::Json(v),
        Node::Text(parts) => Rendered::Str(render_parts(parts, vars, warnings).into()),
        Node::Lone(path) => match lookup(path, vars) {
            Some(LookedUp::Str(s)) => Rendered::Str(s.into()),
            Some(LookedUp::Json(v)) => Rendered::Json(v),
            Some(LookedUp::Data(d)) => Rendered::Data(d),
            None => {
                warn_unknown(path, warnings);
                Rendered::Str("".into())
            }
        },
        Node::Array(items) => {
            Rendered::Array(items.iter().map(|n| render(n, vars, warnings)).collect())
        }
        Node::Object(entries) => Rendered::Object(
            entries
                .iter()
                .map(|(k, n)| (render_parts(k, vars, warnings), render(n, vars, warnings)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(data: &Data) -> Vars<'_> {
        Vars {
            id: "ev-1",
            event_type: "finding_added",
            time: "2026-11-22T10:00:00Z",
            data,
        }
    }

    #[test]
    fn substitution_inside_strings_escapes_json() {
        let data = Data::from(json!({"title": "a \"quoted\" \\ back\nslash ✓"}));
        let t = Template::compile(&json!({"text": "Alert: {{title}}!"}));
        let (v, w) = t.render(&vars(&data));
        assert!(w.is_empty());
        assert_eq!(v["text"], "Alert: a \"quoted\" \\ back\nslash ✓!");
        let bytes = serde_json::to_vec(&v).unwrap();
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn lone_placeholder_keeps_the_json_type() {
        let data = Data::from(
            json!({"count": 3, "finding": {"severity": "high", "cvss": 9.8}, "tags": ["a"]}),
        );
        let t = Template::compile(&json!({
            "n": "{{count}}", "f": "{{finding}}", "s": "{{ finding.severity }}",
            "c": "{{data.finding.cvss}}", "tags": "{{tags}}", "first": "{{tags.0}}"
        }));
        let (v, _) = t.render(&vars(&data));
        assert_eq!(
            v,
            json!({"n": 3, "f": {"severity": "high", "cvss": 9.8}, "s": "high", "c": 9.8, "tags": ["a"], "first": "a"})
        );
    }

    #[test]
    fn event_fields_are_variables() {
        let data = Data::from(json!({}));
        let t = Template::compile(&json!(["{{type}}", "{{id}}", "{{time}}", "{{event_type}}"]));
        let (v, _) = t.render(&vars(&data));
        assert_eq!(
            v,
            json!([
                "finding_added",
                "ev-1",
                "2026-11-22T10:00:00Z",
                "finding_added"
            ])
        );
    }

    #[test]
    fn unknown_variable_renders_empty_with_one_warning() {
        let data = Data::from(json!({}));
        let t = Template::compile(&json!({"a": "x{{nope}}y", "b": "{{nope}}", "c": 5}));
        let (v, w) = t.render(&vars(&data));
        assert_eq!(v, json!({"a": "xy", "b": "", "c": 5}));
        assert_eq!(
            w,
            vec!["unknown template variable {{nope}} rendered empty".to_string()]
        );
    }

    #[test]
    fn static_values_and_odd_braces_pass_through() {
        let data = Data::from(json!({"x": 1}));
        let tpl = json!({"a": true, "b": null, "c": [1, 2], "d": "{{ not closed", "e": "{{}}"});
        let (v, w) = Template::compile(&tpl).render(&vars(&data));
        assert_eq!(v, tpl);
        assert!(w.is_empty());
    }

    #[test]
    fn rendered_bytes_are_the_rendered_value_serialized() {
        let data =
            Data::from(json!({"k": "b", "title": "t", "nested": {"z": [1, {"y": null}], "a": 2}}));
        // Keys come out sorted, and a key that renders twice keeps the last
        // value, as a serde_json object would ("{{k}}" sorts after "b" in
        // the template and renders to "b").
        let t = Template::compile(&json!({
            "z": "{{nested}}", "{{k}}": 1, "b": "{{title}}!", "a": ["{{k}}", "{{nested.z}}"]
        }));
        let (value, _) = t.render(&vars(&data));
        let (bytes, _) = t.render_json(&vars(&data)).unwrap();
        assert_eq!(bytes, serde_json::to_vec(&value).unwrap());
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"a":["b",[1,{"y":null}]],"b":1,"z":{"a":2,"z":[1,{"y":null}]}}"#
        );
    }

    #[test]
    fn header_text_renders_scalars() {
        let data = Data::from(json!({"tenant": "Acme", "n": 2}));
        let mut w = vec![];
        assert_eq!(
            render_text("t={{tenant}} n={{n}}", &vars(&data), &mut w),
            "t=Acme n=2"
        );
        assert!(w.is_empty());
    }

    #[test]
    fn data_kept_as_text_renders_as_its_text_and_a_variable_decodes_only_its_member() {
        let text = r#"{"alerts":[{"id":"a","data":{"title":"t \"q\""}}],"count":1,"group":{"tenant":"acme"}}"#;
        let data = Data::from_text(text.to_owned()).unwrap();
        let t = Template::compile(&json!({
            "all": "{{data}}", "n": "{{count}}", "tenant": "{{group.tenant}}",
            "missing": "{{title}}", "line": "{{count}} for {{data.group.tenant}}"
        }));
        let (bytes, warnings) = t.render_json(&vars(&data)).unwrap();
        let Data::Text(indexed) = &data else {
            panic!("text data stays text")
        };
        assert!(!indexed.is_decoded(), "rendering decoded the whole data");
        let out: Value = serde_json::from_slice(&bytes).unwrap();
        let whole: Value = serde_json::from_str(text).unwrap();
        assert_eq!(out["all"], whole);
        assert_eq!(out["n"], json!(1));
        assert_eq!(out["tenant"], json!("acme"));
        assert_eq!(out["missing"], json!(""));
        assert_eq!(out["line"], json!("1 for acme"));
        assert_eq!(
            warnings,
            vec!["unknown template variable {{title}} rendered empty"]
        );
        // The same template over the decoded value renders the same JSON.
        let (from_value, _) = t.render(&vars(&Data::from(whole)));
        assert_eq!(out, from_value);
    }
}
