//! Twilio SMS destination: the Programmable Messaging API.
//!
//! `build` sends one `POST {url}/2010-04-01/Accounts/{account_sid}/Messages.json`
//! per recipient (the webhook URL is the API base, normally
//! `https://api.twilio.com`) with HTTP basic auth (`account_sid:auth_token`),
//! `Content-Type: application/x-www-form-urlencoded` and the form fields
//! `To`, `From` (or `MessagingServiceSid`) and `Body`.
//!
//! **Body**: the `body` template (`{{…}}` over the event) when set, else
//! `[severity] title: description` from the event (title from `title`,
//! `summary` or `message`, else the event type), plus its link. Twilio
//! refuses a `Body` over 1,600 characters: a longer text is **truncated**
//! to 1,600 characters, the last being an ellipsis (`…`). One message per
//! event, never split: a split SMS arrives in pieces, out of order on some
//! carriers. (Twilio counts characters; a body with non-GSM characters is
//! sent in more, shorter segments, which Twilio handles.)
//!
//! `classify`: 201 (any 2xx) → success; 429 → retry (after `Retry-After`);
//! 5xx → retry; 401/403 (bad credentials) and 400 (e.g. code 21211, an
//! invalid `To`) and other 4xx → fail with Twilio's code and message.
//!
//! Options: `account_sid` (required, `AC…`), `auth_token` (required),
//! `from` (a number in E.164 form) or `messaging_service_sid` (`MG…`), `to`
//! (required: one number or a list of up to 16), `body` (template).

mod account;

pub use account::{Account, MAX_RECIPIENTS, Recipients, classify_twilio, is_e164, summary};
use relay_sdk::text::truncate;
use relay_sdk::{Destination, Event, Outcome, Payload, Request, Response, Target, parse_options};
use serde::Deserialize;

/// Twilio's limit on `Body`, in characters.
pub const BODY_MAX: usize = 1600;

/// Options of the Twilio SMS destination.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub account_sid: String,
    pub auth_token: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    pub to: Recipients,
    /// Template of the message text.
    #[serde(default)]
    pub body: Option<String>,
}

/// The Twilio SMS destination.
#[derive(Debug)]
pub struct TwilioSms {
    account: Account,
    messaging_service_sid: Option<String>,
    body: Option<String>,
}

impl Destination for TwilioSms {
    fn create(options: &str) -> Result<Self, String> {
        let o: Options = parse_options(options)?;
        let service = o.messaging_service_sid.as_deref().map(str::trim);
        match (&o.from, service) {
            (None, None) => {
                return Err(
                    "invalid options: from: give a sender number (or messaging_service_sid)".into(),
                );
            }
            (Some(_), Some(_)) => {
                return Err("invalid options: messaging_service_sid: give either from or messaging_service_sid, not both".into());
            }
            (None, Some(s)) if !(s.len() == 34 && s.starts_with("MG")) => {
                return Err(format!(
                    "invalid options: messaging_service_sid: {s:?} is not a messaging service SID (MG followed by 32 characters)"
                ));
            }
            _ => {}
        }
        if o.body.as_deref().is_some_and(|b| b.trim().is_empty()) {
            return Err("invalid options: body: must not be empty (omit it instead)".into());
        }
        Ok(TwilioSms {
            account: Account::new(&o.account_sid, &o.auth_token, o.from.as_deref(), &o.to)?,
            messaging_service_sid: service.map(str::to_string),
            body: o.body,
        })
    }

    fn build(&self, payload: &Payload, target: &Target) -> Result<Vec<Request>, String> {
        let url = self.account.url(target, "Messages.json")?;
        let event = Event::from_payload(payload);
        let text = match &self.body {
            Some(t) => event.render(t),
            None => summary(&event),
        };
        let text = if text.trim().is_empty() {
            summary(&event)
        } else {
            text
        };
        let body = truncate(&text, BODY_MAX);
        let from = match (&self.account.from, &self.messaging_service_sid) {
            (Some(f), _) => ("From", f.as_str()),
            (None, Some(s)) => ("MessagingServiceSid", s.as_str()),
            (None, None) => return Err("no sender configured".into()),
        };
        Ok(self.account.requests(&url, from, &[("Body", &body)]))
    }

    fn classify(&self, response: &Response) -> Outcome {
        classify_twilio(response)
    }
}

relay_sdk::export_destination!(TwilioSms);

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use relay_sdk::testing::{self, response};
    use serde_json::json;

    pub const SID: &str = "AC0123456789abcdef0123456789abcdef";
    const OPTS: &str = r#"{"account_sid":"AC0123456789abcdef0123456789abcdef","auth_token":"t0ken","from":"+14155550100","to":["+14155550111","+442071838750"]}"#;

    fn form(r: &Request) -> Vec<(String, String)> {
        form_urlencoded::parse(&r.body).into_owned().collect()
    }

    fn build(options: &str, data: serde_json::Value) -> Vec<Request> {
        testing::build::<TwilioSms>(
            options,
            &testing::event_payload(&testing::event(data)),
            &testing::target("https://api.twilio.com/"),
        )
        .unwrap()
    }

    #[test]
    fn one_form_post_per_recipient_with_basic_auth() {
        let r = build(
            OPTS,
            json!({"title": "Brute force", "severity": "high", "url": "https://x.example/1"}),
        );
        assert_eq!(r.len(), 2);
        let expected_auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{SID}:t0ken"))
        );
        for (req, to) in r.iter().zip(["+14155550111", "+442071838750"]) {
            assert_eq!(req.method, "POST");
            assert_eq!(
                req.url,
                format!("https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json")
            );
            assert_eq!(
                req.header_value("authorization"),
                Some(expected_auth.as_str())
            );
            assert_eq!(
                req.header_value("content-type"),
                Some("application/x-www-form-urlencoded")
            );
            assert_eq!(
                form(req),
                vec![
                    ("To".into(), to.into()),
                    ("From".into(), "+14155550100".into()),
                    (
                        "Body".into(),
                        "[high] Brute force https://x.example/1".into()
                    )
                ]
            );
        }
    }

    #[test]
    fn a_long_body_is_truncated_to_1600_characters_with_an_ellipsis() {
        let r = build(OPTS, json!({"title": "é".repeat(3000)}));
        let body = form(&r[0])
            .into_iter()
            .find(|(k, _)| k == "Body")
            .unwrap()
            .1;
        assert_eq!(body.chars().count(), BODY_MAX);
        assert!(body.ends_with('…'));
        let o = r#"{"account_sid":"AC0123456789abcdef0123456789abcdef","auth_token":"t","messaging_service_sid":"MG0123456789abcdef0123456789abcdef","to":"+14155550111","body":"{{type}}: {{host}}"}"#;
        let r = build(o, json!({"host": "h & 1"}));
        assert_eq!(r.len(), 1);
        assert_eq!(
            form(&r[0]),
            vec![
                ("To".into(), "+14155550111".into()),
                (
                    "MessagingServiceSid".into(),
                    "MG0123456789abcdef0123456789abcdef".into()
                ),
                ("Body".into(), format!("{}: h & 1", testing::EVENT_TYPE))
            ]
        );
    }

    #[test]
    fn classifies_twilio_answers() {
        let c = |s, b: &str| testing::classify::<TwilioSms>(OPTS, &response(s, &[], b)).unwrap();
        assert_eq!(
            c(201, r#"{"sid":"SM1","status":"queued"}"#),
            Outcome::Success
        );
        assert_eq!(c(429, ""), Outcome::Retry(None));
        assert_eq!(c(503, ""), Outcome::Retry(None));
        assert_eq!(
            c(
                400,
                r#"{"code":21211,"message":"The 'To' number is not a valid phone number.","status":400}"#
            ),
            Outcome::Fail(
                "Twilio answered 400 (code 21211): The 'To' number is not a valid phone number."
                    .into()
            )
        );
        assert_eq!(c(401, ""), Outcome::Fail("Twilio answered 401".into()));
    }

    #[test]
    fn options_are_validated_by_name() {
        let err = |o: serde_json::Value| TwilioSms::create(&o.to_string()).unwrap_err();
        let base = || json!({"account_sid": SID, "auth_token": "t", "from": "+14155550100", "to": "+14155550111"});
        assert!(TwilioSms::create(&base().to_string()).is_ok());
        let mut o = base();
        o["account_sid"] = json!("SK123");
        assert!(err(o).contains("account_sid"));
        let mut o = base();
        o["to"] = json!(["+14155550111", "0800 CALL ME"]);
        assert!(err(o).contains("to[1]"));
        let mut o = base();
        o["from"] = json!("relay");
        assert!(err(o).contains("from"));
        let mut o = base();
        o["auth_token"] = json!("");
        assert!(err(o).contains("auth_token"));
        let mut o = base();
        o.as_object_mut().unwrap().remove("from");
        assert!(err(o).contains("from"));
        let mut o = base();
        o["to"] = json!(vec!["+14155550111"; 17]);
        assert!(err(o).contains("at most 16"));
        let mut o = base();
        o["tos"] = json!("x");
        assert!(err(o).contains("unknown field `tos`"));
    }
}
