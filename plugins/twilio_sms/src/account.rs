//! What the Twilio SMS and voice destinations share: the account
//! (credentials, sender, recipients), the API URL, form-encoded requests,
//! the default message text and the classification of Twilio's answers.
//! `twilio_voice` includes this file (`#[path]`): two plugin crates cannot
//! link each other (each exports the component's functions).

use base64::Engine as _;
use relay_sdk::text::{one_line, truncate};
use relay_sdk::{Event, Outcome, Request, Response, Target};
use serde::Deserialize;

/// Recipients one event may go to (the relay's requests-per-delivery cap).
pub const MAX_RECIPIENTS: usize = 16;
const REASON_MAX: usize = 300;

/// One number or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Recipients {
    One(String),
    Many(Vec<String>),
}

/// What Twilio SMS and voice share: credentials, sender and recipients.
#[derive(Debug)]
pub struct Account {
    pub account_sid: String,
    pub authorization: String,
    pub from: Option<String>,
    pub to: Vec<String>,
}

/// A phone number in E.164 form: `+` and 8 to 15 digits.
pub fn is_e164(n: &str) -> bool {
    let digits = n.strip_prefix('+').unwrap_or("");
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

impl Account {
    /// Checks the credentials and numbers, naming the field at fault.
    pub fn new(
        account_sid: &str,
        auth_token: &str,
        from: Option<&str>,
        to: &Recipients,
    ) -> Result<Account, String> {
        let sid = account_sid.trim();
        if !(sid.len() == 34
            && sid.starts_with("AC")
            && sid[2..].bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(format!(
                "invalid options: account_sid: {sid:?} is not a Twilio account SID (AC followed by 32 characters)"
            ));
        }
        let token = auth_token.trim();
        if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("invalid options: auth_token: must not be empty or contain spaces".into());
        }
        if let Some(from) = from
            && !is_e164(from.trim())
        {
            return Err(format!(
                "invalid options: from: {from:?} is not a phone number in E.164 form (+14155550100)"
            ));
        }
        let to: Vec<String> = match to {
            Recipients::One(n) => vec![n.trim().to_string()],
            Recipients::Many(v) => v.iter().map(|n| n.trim().to_string()).collect(),
        };
        if to.is_empty() {
            return Err("invalid options: to: must name at least one number".into());
        }
        if to.len() > MAX_RECIPIENTS {
            return Err(format!(
                "invalid options: to: {} numbers; at most {MAX_RECIPIENTS}",
                to.len()
            ));
        }
        if let Some((i, n)) = to.iter().enumerate().find(|(_, n)| !is_e164(n)) {
            return Err(format!(
                "invalid options: to[{i}]: {n:?} is not a phone number in E.164 form (+14155550100)"
            ));
        }
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"));
        Ok(Account {
            account_sid: sid.to_string(),
            authorization: format!("Basic {credentials}"),
            from: from.map(|f| f.trim().to_string()),
            to,
        })
    }

    /// `{base}/2010-04-01/Accounts/{sid}/{resource}`.
    pub fn url(&self, target: &Target, resource: &str) -> Result<String, String> {
        let base = target.url.trim().trim_end_matches('/');
        if base.is_empty() {
            return Err("the webhook has no URL".into());
        }
        let base = base.strip_suffix("/2010-04-01").unwrap_or(base);
        Ok(format!(
            "{base}/2010-04-01/Accounts/{}/{resource}",
            self.account_sid
        ))
    }

    /// One form-encoded POST per recipient; `fields` are added after `To`
    /// and `From`.
    pub fn requests(
        &self,
        url: &str,
        from_field: (&str, &str),
        fields: &[(&str, &str)],
    ) -> Vec<Request> {
        self.to
            .iter()
            .map(|to| {
                let mut form = form_urlencoded::Serializer::new(String::new());
                form.append_pair("To", to);
                form.append_pair(from_field.0, from_field.1);
                for (k, v) in fields {
                    form.append_pair(k, v);
                }
                Request::post(url)
                    .header("Authorization", self.authorization.clone())
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(form.finish().into_bytes())
            })
            .collect()
    }
}

/// The default message text: `[severity] title: description <link>`.
pub fn summary(event: &Event) -> String {
    let title = ["title", "summary", "message", "text"]
        .iter()
        .find_map(|p| event.text(p))
        .map(|t| one_line(&t))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| {
            if event.event_type.is_empty() {
                "relay event".to_string()
            } else {
                event.event_type.clone()
            }
        });
    let mut out = match event.text("severity").map(|s| one_line(&s)) {
        Some(sev) if !sev.is_empty() => format!("[{sev}] {title}"),
        _ => title,
    };
    if let Some(d) = event
        .text("description")
        .map(|d| one_line(&d))
        .filter(|d| !d.is_empty())
    {
        out.push_str(": ");
        out.push_str(&d);
    }
    if let Some(link) = ["url", "link"].iter().find_map(|p| event.str(p)) {
        out.push(' ');
        out.push_str(link);
    }
    out
}

/// Twilio's answers: 2xx success, 429/5xx retry, the rest fail with
/// Twilio's `code` and `message`.
pub fn classify_twilio(response: &Response) -> Outcome {
    match response.status {
        200..=299 => Outcome::Success,
        429 | 500..=599 => Outcome::Retry(response.retry_after_ms()),
        status => {
            #[derive(Deserialize)]
            struct Answer {
                code: Option<i64>,
                message: Option<String>,
            }
            let detail = match serde_json::from_slice::<Answer>(&response.body) {
                Ok(Answer { code, message }) => {
                    let code = code.map(|c| format!(" (code {c})")).unwrap_or_default();
                    format!("{code}: {}", message.unwrap_or_default())
                }
                Err(_) => format!(
                    ": {}",
                    response
                        .body_text()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            };
            let detail = detail.trim_end_matches([':', ' ']);
            Outcome::Fail(format!(
                "Twilio answered {status}{}",
                truncate(detail, REASON_MAX)
            ))
        }
    }
}
