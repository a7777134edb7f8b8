//! `url: unix:///…` — the host's own syslog daemon (DESIGN §18), end to
//! end: the real relay writes, through the `syslog` crate's unix transport,
//! to a private rsyslogd (Debian's, `imuxsock` on a socket in a temp dir,
//! tests/support/rsyslog/imuxsock.conf.in) that parses RFC 5424 and decodes
//! the structured data. Needs rsyslog (`.ci/install-test-deps`); fails,
//! never skips, without it.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// A private rsyslogd listening on a unix socket; killed when dropped.
struct Rsyslog {
    child: Child,
    dir: tempfile::TempDir,
}

impl Rsyslog {
    fn start() -> Rsyslog {
        let bin = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|d| d.join("rsyslogd"))
            .find(|p| p.is_file())
            .expect("rsyslogd is installed (bash .ci/install-test-deps)");
        let dir = tempfile::tempdir().expect("temp dir");
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let template = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/rsyslog/imuxsock.conf.in"
        );
        let conf = std::fs::read_to_string(template)
            .unwrap()
            .replace("@WORK@", &work.display().to_string())
            .replace(
                "@SOCKET@",
                &dir.path().join("log.sock").display().to_string(),
            )
            .replace("@OUT@", &dir.path().join("out.json").display().to_string());
        let conf_path = dir.path().join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("rsyslogd.log")).unwrap();
        let child = Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run rsyslogd");
        let mut r = Rsyslog { child, dir };
        let deadline = Instant::now() + WAIT;
        while !r.socket().exists() {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("rsyslogd exited ({status}); its log:\n{}", r.log());
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd made no socket in {WAIT:?}; its log:\n{}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("log.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rsyslogd.log")).unwrap_or_default()
    }

    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("out.json"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    async fn wait_records(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.records();
            if got.len() >= n {
                tokio::time::sleep(Duration::from_millis(300)).await;
                return self.records();
            }
            assert!(
                Instant::now() < deadline,
                "rsyslog recorded {} of {n}; its log:\n{}",
                got.len(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unix_socket_messages_reach_rsyslog_as_rfc5424_with_the_event_in_structured_data() {
    let rs = Rsyslog::start();
    let relay = Relay::start(&format!(
        "webhooks:\n  - name: Local\n    url: unix://{}\n    format: syslog\n    options: {{facility: auth, app_name: relay-soc}}\n",
        rs.socket().display()
    ))
    .await;
    let hostile = "Impossible travel \"j.doe\" ] \\ ☕\nsecond line";
    let (s, body) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "incident.opened", "id": "local-1", "time": "2026-11-27T22:14:03.120Z",
                    "data": {"title": hostile, "severity": "critical", "tenant_name": "Acme",
                             "user_name": "j.doe@acme.example", "score": 9.5}}),
        )
        .await;
    assert_eq!(s, 202, "{body}");
    let records = rs.wait_records(1).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r["version"], "1", "{r:#}");
    assert_eq!(r["pri"], "34", "auth.crit: {r:#}");
    assert_eq!(r["app_name"], "relay-soc", "{r:#}");
    assert_eq!(
        r["msg"], "Impossible travel \"j.doe\" ] \\ ☕ second line",
        "{r:#}"
    );
    let sd = &r["vars"]["rfc5424-sd"]["relay@32473"];
    assert_eq!(sd["event_id"], "local-1", "{r:#}");
    assert_eq!(sd["event_type"], "incident.opened");
    assert_eq!(sd["event_time"], "2026-11-27T22:14:03.120Z");
    assert_eq!(sd["tenant_name"], "Acme");
    assert_eq!(sd["user_name"], "j.doe@acme.example");
    assert_eq!(sd["score"], "9.5");
    assert_eq!(sd["title"], hostile.replace('\n', " "));
    let history = relay.wait_history("local", WAIT, |h| h.len() == 1).await;
    assert_eq!(history[0]["status"], "succeeded", "{history:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_socket_is_a_retried_network_failure() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&format!(
        "webhooks:\n  - name: Local\n    url: unix://{}\n    format: syslog\n    retry_count: 1\ndelivery: {{retry_base_ms: 100, retry_max_ms: 100}}\n",
        dir.path().join("no-such.sock").display()
    ))
    .await;
    let (s, _) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "x", "data": {"title": "t"}}),
        )
        .await;
    assert_eq!(s, 202);
    let history = relay.wait_history("local", WAIT, |h| h.len() == 2).await;
    let mut statuses: Vec<&str> = history
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["failed", "retrying"], "{history:#?}");
    for a in &history {
        assert_eq!(a["error"]["kind"], "network", "{a}");
        assert!(
            a["error"]["message"]
                .as_str()
                .unwrap()
                .contains("no-such.sock"),
            "{a}"
        );
    }
}
