//! Email end to end (DESIGN §18): the real relay sends through a real SMTP
//! server (aiosmtpd, started by the test on loopback with a certificate made
//! here by rcgen), and every received message is parsed with Python's
//! `email` package (tests/support/smtp_server.py). Needs `python3 -m pip
//! install aiosmtpd` (`.ci/install-test-deps`); fails, never skips,
//! without it.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);
const USER: &str = "relay-user";
const PASSWORD: &str = "smtp-pw-5b1d9e";

/// A running aiosmtpd; killed on drop (also when the test fails).
struct Smtp {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Smtp {
    fn start(mode: &str, login: bool) -> Smtp {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_, cert, key) = certificates(dir.path());
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_server.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(mode)
            .arg(port.to_string())
            .arg(&out)
            .arg(&cert)
            .arg(&key);
        if login {
            cmd.args([USER, PASSWORD]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("smtp.log")).unwrap())
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let smtp = Smtp { child, dir, port };
        match rx.recv_timeout(WAIT) {
            Ok(line) if line.trim() == "ready" => smtp,
            other => panic!(
                "aiosmtpd did not start ({other:?}; is it installed? `python3 -m pip install aiosmtpd`):\n{}",
                smtp.log()
            ),
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("smtp.log")).unwrap_or_default()
    }

    /// Files `prefix<n>.json` the server wrote, in order of n.
    fn records(&self, prefix: &str) -> Vec<Value> {
        let out = self.dir.path().join("out");
        (1..)
            .map(|n| out.join(format!("{prefix}{n}.json")))
            .take_while(|p| p.exists())
            .map(|p| serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap())
            .collect()
    }

    /// The accepted messages, parsed by Python's `email` package.
    fn messages(&self) -> Vec<Value> {
        self.records("")
    }

    /// Messages the server refused with a scripted answer.
    fn refused(&self) -> Vec<Value> {
        self.records("refused-")
    }

    async fn wait_messages(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP server got {} of {n} messages; its log:\n{}",
                got.len(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA (ca.pem) and a `localhost` / 127.0.0.1 server certificate it signed.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "relay email test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server-key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// relay.yaml after `base_config`: the first line continues its
/// `network:` block (it ends the base), trusting the test CA.
fn config(ca: Option<&Path>, hook: &str) -> String {
    let ca = ca
        .map(|c| format!("  ca_file: {}\n", c.display()))
        .unwrap_or_default();
    format!(
        "{ca}delivery:\n  retry_base_ms: 100\n  retry_max_ms: 200\nwebhooks:\n  - name: Mail\n    format: email\n    retry_count: 2\n{hook}"
    )
}

fn email_block(login: bool) -> String {
    let login = if login {
        format!("      username: {USER}\n    secret: \"{PASSWORD}\"\n")
    } else {
        String::new()
    };
    format!(
        "    email:\n      from: \"Relay Alerts <alerts@relay.example>\"\n      to: [soc@acme.example, \"Ana Lyst <ana@acme.example>\"]\n      cc: [audit@acme.example]\n{login}"
    )
}

async fn post(relay: &Relay, data: Value) -> String {
    let (s, body) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "incident.opened", "data": data}),
        )
        .await;
    assert_eq!(s, 202, "{body}");
    body["id"].as_str().unwrap_or_default().to_owned()
}

fn part<'a>(m: &'a Value, content_type: &str) -> &'a str {
    m["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["content_type"] == content_type)
        .and_then(|p| p["content"].as_str())
        .unwrap_or_else(|| panic!("no {content_type} part in {m:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn email_over_starttls_with_login_is_multipart_alternative_with_utf8_subject_and_escaped_html()
 {
    let smtp = Smtp::start("starttls", true);
    let hook = format!(
        "    url: smtp://localhost:{}\n{}",
        smtp.port,
        email_block(true)
    );
    let relay = Relay::start(&config(Some(&smtp.ca()), &hook)).await;
    post(
        &relay,
        json!({"text": "Impossible travel für j.doe ☕", "severity": "high", "tenant_name": "Acme",
               "user_name": "j.doe@acme.example", "incident_time_utc": "2026-11-27 22:14",
               "incident_link": "https://soc.example/i/42", "steps_taken": ["Session revoked"],
               "next_steps": "Confirm with the user"}),
    )
    .await;
    let got = smtp.wait_messages(1).await;
    let m = &got[0];
    assert_eq!(m["encrypted"], true, "{m:#}");
    assert_eq!(m["login"], USER);
    assert_eq!(m["mail_from"], "alerts@relay.example");
    assert_eq!(
        m["rcpt_tos"],
        json!(["soc@acme.example", "ana@acme.example", "audit@acme.example"])
    );
    let h = &m["headers"];
    assert_eq!(h["Subject"], "[high] Impossible travel für j.doe ☕");
    assert_eq!(h["From"], "Relay Alerts <alerts@relay.example>");
    assert_eq!(h["To"], "soc@acme.example, Ana Lyst <ana@acme.example>");
    assert_eq!(h["Cc"], "audit@acme.example");
    assert_eq!(m["content_type"], "multipart/alternative");
    let types: Vec<&str> = m["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["content_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["text/plain", "text/html"]);
    let text = part(m, "text/plain");
    for line in [
        "Tenant: Acme",
        "Affected identity: j.doe@acme.example",
        "Time (UTC): 2026-11-27 22:14",
        "- Session revoked",
        "https://soc.example/i/42",
    ] {
        assert!(text.contains(line), "{line:?} not in {text}");
    }
    assert!(part(m, "text/html").contains("<a href=\"https://soc.example/i/42\""));

    // The delivery's id is the Message-ID; the history says succeeded.
    let history = relay.wait_history("mail", WAIT, |h| h.len() == 1).await;
    assert_eq!(history[0]["status"], "succeeded", "{history:#?}");
    let delivery = history[0]["delivery_id"].as_str().unwrap();
    assert_eq!(
        h["Message-ID"].as_str().unwrap(),
        format!("<{delivery}@relay.invalid>")
    );

    // A hostile title: no header injection, nothing executable in the HTML.
    post(
        &relay,
        json!({"title": "<script>alert(1)</script>\r\nBcc: victim@evil.example\r\n\r\nbody",
               "description": "<img src=x onerror=alert(1)> & \"q\""}),
    )
    .await;
    let got = smtp.wait_messages(2).await;
    let m = &got[1];
    let names: Vec<&str> = m["header_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.eq_ignore_ascii_case("bcc")),
        "{names:?}"
    );
    assert_eq!(
        m["rcpt_tos"],
        json!(["soc@acme.example", "ana@acme.example", "audit@acme.example"])
    );
    let subject = m["headers"]["Subject"].as_str().unwrap();
    assert!(
        subject.starts_with("<script>alert(1)</script>"),
        "{subject:?}"
    );
    assert!(
        !subject.contains('\n') && !subject.contains('\r'),
        "{subject:?}"
    );
    let html = part(m, "text/html");
    assert!(
        !html.contains("<script") && !html.contains("<img"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt; &amp; &quot;q&quot;"),
        "{html}"
    );

    let (_, w) = relay
        .get("/api/v1/webhooks/mail", Some(ADMIN))
        .await
        .unwrap();
    assert!(!w.to_string().contains(PASSWORD), "{w}");
    assert!(!relay.logs().contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread")]
async fn email_over_smtps_round_trip() {
    let smtp = Smtp::start("smtps", false);
    let hook = format!(
        "    url: smtps://localhost:{}\n{}",
        smtp.port,
        email_block(false)
    );
    let relay = Relay::start(&config(Some(&smtp.ca()), &hook)).await;
    post(
        &relay,
        json!({"title": "Over implicit TLS", "severity": "low"}),
    )
    .await;
    let got = smtp.wait_messages(1).await;
    assert_eq!(got[0]["encrypted"], true);
    assert_eq!(got[0]["headers"]["Subject"], "[low] Over implicit TLS");
    assert_eq!(
        part(&got[0], "text/plain").lines().next(),
        Some("Over implicit TLS")
    );
    let history = relay.wait_history("mail", WAIT, |h| h.len() == 1).await;
    assert_eq!(history[0]["status"], "succeeded", "{history:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn email_a_4xx_reply_is_retried_and_a_5xx_reply_fails() {
    let smtp = Smtp::start("starttls", false);
    let hook = format!(
        "    url: smtp://localhost:{}\n{}",
        smtp.port,
        email_block(false)
    );
    let relay = Relay::start(&config(Some(&smtp.ca()), &hook)).await;
    post(&relay, json!({"title": "answer-4xx-once"})).await;
    let history = relay
        .wait_history("mail", WAIT, |h| {
            h.iter().any(|a| a["status"] == "succeeded")
        })
        .await;
    let mut statuses: Vec<(u64, String)> = history
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [(1, "retrying".to_owned()), (2, "succeeded".to_owned())],
        "{history:#?}"
    );
    let retried = history.iter().find(|a| a["status"] == "retrying").unwrap();
    assert_eq!(retried["error"]["kind"], "smtp_status", "{retried}");
    assert!(
        retried["error"]["message"]
            .as_str()
            .unwrap()
            .contains("451")
    );
    // The same message both times (one Message-ID), delivered once.
    assert_eq!(smtp.refused().len(), 1);
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(
        smtp.refused()[0]["message_id"],
        smtp.messages()[0]["headers"]["Message-ID"]
    );

    post(&relay, json!({"title": "answer-5xx"})).await;
    let history = relay
        .wait_history("mail", WAIT, |h| h.iter().any(|a| a["status"] == "failed"))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let failed: Vec<&Value> = history.iter().filter(|a| a["status"] == "failed").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["attempt"], 1, "a 5xx is not retried");
    assert_eq!(failed[0]["error"]["kind"], "smtp_status");
    assert!(
        failed[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("550")
    );
    assert_eq!(smtp.refused().len(), 2);
    assert_eq!(smtp.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn email_without_starttls_is_refused_unless_plaintext_is_allowed_to_a_private_host() {
    let smtp = Smtp::start("plain", false);
    let hook = format!(
        "    url: smtp://127.0.0.1:{}\n{}",
        smtp.port,
        email_block(false)
    );
    let relay = Relay::start(&config(None, &hook)).await;
    post(&relay, json!({"title": "must not go in clear"})).await;
    let history = relay
        .wait_history("mail", WAIT, |h| h.iter().any(|a| a["status"] == "failed"))
        .await;
    let last = history.iter().find(|a| a["status"] == "failed").unwrap();
    assert_eq!(last["error"]["kind"], "network", "{last}");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("STARTTLS"),
        "{last}"
    );
    assert!(smtp.messages().is_empty());
    drop(relay);

    // allow_plaintext, and 127.0.0.1 is in network.allow_private.
    let hook = format!(
        "    url: smtp://127.0.0.1:{}\n    allow_plaintext: true\n{}",
        smtp.port,
        email_block(false)
    );
    let relay = Relay::start(&config(None, &hook)).await;
    post(&relay, json!({"title": "plaintext to a private relay"})).await;
    let got = smtp.wait_messages(1).await;
    assert_eq!(got[0]["encrypted"], false);
    assert_eq!(got[0]["headers"]["Subject"], "plaintext to a private relay");
}

#[tokio::test(flavor = "multi_thread")]
async fn email_to_a_server_whose_certificate_is_not_trusted_is_a_retried_tls_failure() {
    let smtp = Smtp::start("starttls", false);
    let hook = format!(
        "    url: smtp://localhost:{}\n{}",
        smtp.port,
        email_block(false)
    );
    // No ca_file: the test CA is unknown.
    let relay = Relay::start(&config(None, &hook)).await;
    post(&relay, json!({"title": "untrusted"})).await;
    let history = relay.wait_history("mail", WAIT, |h| h.len() == 3).await;
    let mut statuses: Vec<&str> = history
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["failed", "retrying", "retrying"], "{history:#?}");
    for a in &history {
        assert_eq!(a["error"]["kind"], "network", "{a}");
    }
    assert!(smtp.messages().is_empty());
}
