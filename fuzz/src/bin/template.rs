//! Fuzz target: body templates (`relay::template`): compile a template from
//! JSON text, render it against an event, and render a header value.
//!
//! Input: `template-json \0 data-json \0 id \0 type \0 time`.
//! Checked: `render_json` succeeds and its bytes are valid JSON whatever the
//! event holds (DESIGN §7), and agree with `render`.

use relay::template::{Template, Vars, render_text};
use serde_json::Value;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let f = relay_fuzz::fields(data, 5);
        let Ok(template) = serde_json::from_str::<Value>(&f[0]) else {
            return;
        };
        let data = serde_json::from_str::<Value>(&f[1]).unwrap_or(Value::Null);
        let vars = Vars {
            id: &f[2],
            event_type: &f[3],
            time: &f[4],
            data: &data,
        };
        let compiled = Template::compile(&template);
        let (value, warnings) = compiled.render(&vars);
        let (bytes, json_warnings) = compiled
            .render_json(&vars)
            .expect("render_json failed on a compiled template");
        let parsed: Value = serde_json::from_slice(&bytes).expect("render_json wrote invalid JSON");
        assert_eq!(warnings, json_warnings, "render and render_json disagree");
        assert_eq!(
            parsed.is_object(),
            value.is_object(),
            "render and render_json disagree"
        );
        let mut header_warnings = Vec::new();
        let _ = render_text(&f[0], &vars, &mut header_warnings);
    });
}
