//! Twilio voice destination: a phone call that reads the event out.
//!
//! `build` sends one `POST {url}/2010-04-01/Accounts/{account_sid}/Calls.json`
//! per recipient (the webhook URL is the API base, normally
//! `https://api.twilio.com`) with HTTP basic auth (`account_sid:auth_token`),
//! `Content-Type: application/x-www-form-urlencoded` and the form fields
//! `To`, `From` and `Twiml`:
//!
//! ```xml
//! <Response><Say voice="alice" language="en-US">text</Say></Response>
//! ```
//!
//! (`voice` and `language` only when set; `repeat` > 1 says it again, up to
//! 3 times, with a one-second `<Pause>` between.) The text is the `say`
//! template (`{{…}}` over the event), else `Security alert. [severity]
//! title.` — links are not read out. It is **XML-escaped** (`& < > " '`) and
//! control characters are dropped, so event data cannot add TwiML verbs;
//! it is cut to 1,000 characters (Twilio refuses a `Twiml` parameter over
//! 4,000).
//!
//! `classify`: 201 (any 2xx) → success; 429 and 5xx → retry; 400 (e.g.
//! code 21205, invalid URL/TwiML; 21211, invalid `To`), 401 and other 4xx
//! → fail with Twilio's code and message.
//!
//! Options: `account_sid`, `auth_token`, `from`, `to` (one number or a list
//! of up to 16; required), `say` (template), `voice`, `language`, `repeat`
//! (1–3, default 1).

#[path = "../../twilio_sms/src/account.rs"]
#[allow(dead_code)]
mod account;

use account::{Account, Recipients, classify_twilio};
use relay_sdk::text::{one_line, truncate};
use relay_sdk::{Destination, Event, Outcome, Payload, Request, Response, Target, parse_options};
use serde::Deserialize;

/// The longest text read out, in characters.
pub const SAY_MAX: usize = 1000;
/// Twilio's limit on the `Twiml` parameter.
pub const TWIML_MAX: usize = 4000;

/// Options of the Twilio voice destination.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub account_sid: String,
    pub auth_token: String,
    pub from: String,
    pub to: Recipients,
    #[serde(default)]
    pub say: Option<String>,
    #[serde(default)]
    pub voice: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub repeat: Option<u8>,
}

/// The Twilio voice destination.
#[derive(Debug)]
pub struct TwilioVoice {
    account: Account,
    say: Option<String>,
    /// `<Say>`'s attributes, already escaped.
    attributes: String,
    repeat: u8,
}

/// Escapes text for XML character data and attribute values, dropping
/// control characters XML 1.0 does not allow.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// [`xml_escape`] cut to `max_chars` characters of output (never inside
/// an entity), with an ellipsis when cut.
fn escape_within(text: &str, max_chars: usize) -> String {
    let full = xml_escape(text);
    if full.chars().count() <= max_chars {
        return full;
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let piece = xml_escape(c.encode_utf8(&mut [0; 4]));
        let n = piece.chars().count();
        if used + n + 1 > max_chars {
            break;
        }
        used += n;
        out.push_str(&piece);
    }
    out.push('…');
    out
}

fn attribute_value(name: &str, value: &Option<String>) -> Result<String, String> {
    match value.as_deref().map(str::trim) {
        None => Ok(String::new()),
        Some(v)
            if !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            Ok(format!(" {name}=\"{}\"", xml_escape(v)))
        }
        Some(v) => Err(format!(
            "invalid options: {name}: {v:?} is not a Twilio {name} name (letters, digits, - _ .)"
        )),
    }
}

impl Destination for TwilioVoice {
    fn create(options: &str) -> Result<Self, String> {
        let o: Options = parse_options(options)?;
        let repeat = o.repeat.unwrap_or(1);
        if !(1..=3).contains(&repeat) {
            return Err(format!(
                "invalid options: repeat: {repeat} is not between 1 and 3"
            ));
        }
        if o.say.as_deref().is_some_and(|b| b.trim().is_empty()) {
            return Err("invalid options: say: must not be empty (omit it instead)".into());
        }
        let attributes =
            attribute_value("voice", &o.voice)? + &attribute_value("language", &o.language)?;
        Ok(TwilioVoice {
            account: Account::new(&o.account_sid, &o.auth_token, Some(&o.from), &o.to)?,
            say: o.say,
            attributes,
            repeat,
        })
    }

    fn build(&self, payload: &Payload, target: &Target) -> Result<Vec<Request>, String> {
        let url = self.account.url(target, "Calls.json")?;
        let event = Event::from_payload(payload);
        let twiml = self.twiml(&event);
        if twiml.chars().count() > TWIML_MAX {
            return Err(format!(
                "the TwiML is over Twilio's {TWIML_MAX}-character limit"
            ));
        }
        let from = self.account.from.as_deref().unwrap_or_default();
        Ok(self
            .account
            .requests(&url, ("From", from), &[("Twiml", &twiml)]))
    }

    fn classify(&self, response: &Response) -> Outcome {
        classify_twilio(response)
    }
}

relay_sdk::export_destination!(TwilioVoice);

impl TwilioVoice {
    /// The TwiML document of the call.
    pub fn twiml(&self, event: &Event) -> String {
        let text = self
            .say
            .as_deref()
            .map(|t| one_line(&event.render(t)))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| spoken(event));
        // Each `<Say>` gets an equal share of Twilio's limit, counted
        // after escaping (an escaped character takes up to 6).
        let share = (TWIML_MAX - 64) / usize::from(self.repeat) - self.attributes.len() - 11;
        let say = format!(
            "<Say{}>{}</Say>",
            self.attributes,
            escape_within(&truncate(&text, SAY_MAX), share)
        );
        let mut out = String::from("<Response>");
        for i in 0..self.repeat {
            if i > 0 {
                out.push_str("<Pause length=\"1\"/>");
            }
            out.push_str(&say);
        }
        out.push_str("</Response>");
        out
    }
}

/// `Security alert. [high] title.` without links.
fn spoken(event: &Event) -> String {
    let title = ["title", "summary", "message", "text"]
        .iter()
        .find_map(|p| event.text(p))
        .map(|t| one_line(&t))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| event.event_type.replace(['_', '.'], " "));
    match event.text("severity").map(|s| one_line(&s)) {
        Some(sev) if !sev.is_empty() => format!("Security alert. Severity {sev}. {title}."),
        _ => format!("Security alert. {title}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_sdk::testing::{self, response};
    use serde_json::json;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn opts(extra: serde_json::Value) -> String {
        let mut o = json!({"account_sid": SID, "auth_token": "t0ken", "from": "+14155550100", "to": "+14155550111"});
        for (k, v) in extra.as_object().unwrap() {
            o[k] = v.clone();
        }
        o.to_string()
    }

    fn twiml_of(options: &str, data: serde_json::Value) -> String {
        let r = testing::build::<TwilioVoice>(
            options,
            &testing::event_payload(&testing::event(data)),
            &testing::target("https://api.twilio.com"),
        )
        .unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].url,
            format!("https://api.twilio.com/2010-04-01/Accounts/{SID}/Calls.json")
        );
        assert_eq!(
            r[0].header_value("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert!(
            r[0].header_value("authorization")
                .unwrap()
                .starts_with("Basic ")
        );
        let form: Vec<(String, String)> = form_urlencoded::parse(&r[0].body).into_owned().collect();
        assert_eq!(form[0], ("To".into(), "+14155550111".into()));
        assert_eq!(form[1], ("From".into(), "+14155550100".into()));
        assert_eq!(form[2].0, "Twiml");
        form[2].1.clone()
    }

    #[test]
    fn the_call_says_the_event() {
        let t = twiml_of(
            &opts(json!({})),
            json!({"title": "Brute force on VPN", "severity": "high"}),
        );
        assert_eq!(
            t,
            "<Response><Say>Security alert. Severity high. Brute force on VPN.</Say></Response>"
        );
    }

    #[test]
    fn event_text_is_xml_escaped_so_it_cannot_add_verbs() {
        let t = twiml_of(
            &opts(json!({"voice": "alice", "language": "en-GB", "repeat": 2})),
            json!({"title": "</Say><Dial>+15555550199</Dial><Say>& 'x' \"y\"\u{1}"}),
        );
        assert_eq!(
            t,
            "<Response><Say voice=\"alice\" language=\"en-GB\">Security alert. &lt;/Say&gt;&lt;Dial&gt;+15555550199&lt;/Dial&gt;&lt;Say&gt;&amp; &apos;x&apos; &quot;y&quot;.</Say><Pause length=\"1\"/><Say voice=\"alice\" language=\"en-GB\">Security alert. &lt;/Say&gt;&lt;Dial&gt;+15555550199&lt;/Dial&gt;&lt;Say&gt;&amp; &apos;x&apos; &quot;y&quot;.</Say></Response>"
        );
        assert_eq!(t.matches("<Say").count(), 2);
    }

    #[test]
    fn long_texts_stay_within_twilios_limit() {
        let t = twiml_of(
            &opts(json!({"repeat": 3})),
            json!({"title": "<".repeat(5000)}),
        );
        assert!(t.chars().count() <= TWIML_MAX, "{}", t.chars().count());
    }

    #[test]
    fn options_and_answers() {
        assert!(
            TwilioVoice::create(&opts(json!({"repeat": 4})))
                .unwrap_err()
                .contains("repeat")
        );
        assert!(
            TwilioVoice::create(&opts(json!({"voice": "a\"b"})))
                .unwrap_err()
                .contains("voice")
        );
        assert!(
            TwilioVoice::create(&opts(json!({"from": "x"})))
                .unwrap_err()
                .contains("from")
        );
        assert!(
            TwilioVoice::create(&opts(json!({"say": " "})))
                .unwrap_err()
                .contains("say")
        );
        let c = |s, b: &str| {
            testing::classify::<TwilioVoice>(&opts(json!({})), &response(s, &[], b)).unwrap()
        };
        assert_eq!(c(201, r#"{"sid":"CA1"}"#), Outcome::Success);
        assert_eq!(c(500, ""), Outcome::Retry(None));
        assert!(
            matches!(c(400, r#"{"code":21205,"message":"Url is not a valid URL"}"#), Outcome::Fail(r) if r.contains("21205"))
        );
    }
}
