//! The syslog transport against a real rsyslog (DESIGN.md §15): messages made
//! by the `syslog` formatter plugin are sent with `Deliverer::send_syslog`
//! over UDP, TCP and TLS to an `rsyslogd` this test starts itself (private
//! work directory, loopback ports), which parses them as RFC 5424, decodes
//! the structured data (mmpstrucdata) and writes one JSON object per message.
//!
//! rsyslogd must be installed (`bash .ci/install-test-deps`); without it these
//! tests fail, they never pass silently.

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use relay::deliver::{Deliverer, DeliveryError, Guard, Policy};
use relay_plugin_syslog::Syslog;
use relay_sdk::testing;
use serde_json::{Value, json};

const CONF_TEMPLATE: &str = include_str!("support/rsyslog/rsyslog.conf.in");
const WAIT: Duration = Duration::from_secs(10);
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
const SD_ID: &str = "relay@32473";

/// Formatter options: fixed header fields the receiver must report back.
const OPTIONS: &str =
    r#"{"hostname":"scanner-01.example","app_name":"relay-test","procid":"4242"}"#;

/// A title with non-ASCII text (MSG is sent after a UTF-8 BOM).
const TITLE: &str = "SQL injection in «ünïcödé» 日本語 ✓";
/// An SD value that needs all three RFC 5424 escapes.
const EVIDENCE: &str = r#"id=1" OR "1"="1 \ path C:\temp\[x] ]"#;

/// The syslog plugin's message for an event of type `msgid` (its MSGID).
fn message(msgid: &str, data: Value) -> Vec<u8> {
    testing::format::<Syslog>(OPTIONS, &testing::event_of(msgid, data))
        .expect("the syslog formatter formats the event")
        .body
}

fn finding(msgid: &str) -> Vec<u8> {
    message(
        msgid,
        json!({"title": TITLE, "severity": "critical", "evidence": EVIDENCE, "Tenant": "Acme"}),
    )
}

fn deliverer(allow: &[&str], ca_file: Option<&Path>) -> Deliverer {
    let allow = allow.iter().map(|n| n.parse().unwrap()).collect();
    Deliverer::with_ca_file(Guard::new(allow), Policy::default(), ca_file).expect("CA file loads")
}

/// A private rsyslogd; killed when dropped.
struct Rsyslog {
    child: Child,
    dir: tempfile::TempDir,
    out: PathBuf,
    udp: u16,
    tcp: u16,
    tls: u16,
}

impl Rsyslog {
    /// Starts rsyslogd and waits (bounded) until its three listeners are up.
    fn start() -> Rsyslog {
        let bin = rsyslogd().unwrap_or_else(|| {
            panic!(
                "rsyslogd is not installed; these tests need Debian's rsyslog and rsyslog-gnutls: \
                 run `bash .ci/install-test-deps`"
            )
        });
        let mut last = String::new();
        // A picked port can be taken in between; try a few times.
        for _ in 0..3 {
            match Rsyslog::try_start(&bin) {
                Ok(r) => return r,
                Err(e) => last = e,
            }
        }
        panic!(
            "rsyslogd did not start listening (the TLS listener needs rsyslog-gnutls: run \
             `bash .ci/install-test-deps`): {last}"
        );
    }

    fn try_start(bin: &Path) -> Result<Rsyslog, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let work = dir.path().join("work");
        std::fs::create_dir(&work).expect("work dir");
        let (ca, cert, key) = certificates(dir.path());
        let out = dir.path().join("out.json");
        let (udp, tcp, tls) = (free_udp_port(), free_tcp_port(), free_tcp_port());
        let conf = CONF_TEMPLATE
            .replace("@WORK@", &work.display().to_string())
            .replace("@CA@", &ca.display().to_string())
            .replace("@CERT@", &cert.display().to_string())
            .replace("@KEY@", &key.display().to_string())
            .replace("@OUT@", &out.display().to_string())
            .replace("@UDP_PORT@", &udp.to_string())
            .replace("@TCP_PORT@", &tcp.to_string())
            .replace("@TLS_PORT@", &tls.to_string());
        let conf_path = dir.path().join("rsyslog.conf");
        std::fs::write(&conf_path, conf).expect("write rsyslog.conf");
        let log = std::fs::File::create(dir.path().join("rsyslogd.log")).expect("log file");
        let child = Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let mut r = Rsyslog {
            child,
            dir,
            out,
            udp,
            tcp,
            tls,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            if listening("udp", udp) && listening("tcp", tcp) && listening("tcp", tls) {
                return Ok(r);
            }
            if let Ok(Some(status)) = r.child.try_wait() {
                return Err(format!("rsyslogd exited ({status}); its log:\n{}", r.log()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not listening on udp {udp}, tcp {tcp}, tls {tls} after {WAIT:?}; its log:\n{}",
                    r.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rsyslogd.log")).unwrap_or_default()
    }

    /// Every record written so far.
    fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("rsyslog wrote a line that is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// Waits (up to 10 s) until a record with each of `msgids` is there, then
    /// a little longer so that stray extra records would show; returns all.
    async fn wait_for(&self, msgids: &[&str]) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let records = self.records();
            let seen = |id: &&str| records.iter().any(|r| r["msgid"] == **id);
            if msgids.iter().all(seen) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                return self.records();
            }
            if Instant::now() > deadline {
                let missing: Vec<_> = msgids.iter().filter(|m| !seen(m)).collect();
                panic!(
                    "rsyslog did not record {missing:?} within {WAIT:?}; records: {records:#?}\nrsyslogd log:\n{}",
                    self.log()
                );
            }
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

fn rsyslogd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join("rsyslogd"))
        .find(|p| p.is_file())
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free TCP port")
        .port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

/// The sockets of this network namespace (Linux /proc/net/{proto}, and
/// {proto}6 for TCP): (local port, remote port, state). States: TCP 0A =
/// LISTEN, 01 = ESTABLISHED, 06 = TIME_WAIT, …; UDP 07 = bound.
fn sockets(proto: &str) -> Vec<(u16, u16, String)> {
    let tables = if proto == "tcp" {
        vec!["tcp", "tcp6"]
    } else {
        vec![proto]
    };
    let port = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    tables
        .into_iter()
        .flat_map(|t| {
            let table = std::fs::read_to_string(format!("/proc/net/{t}")).unwrap_or_default();
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    Some((
                        port(cols.get(1)?)?,
                        port(cols.get(2)?)?,
                        cols.get(3)?.to_string(),
                    ))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn listening(proto: &str, port: u16) -> bool {
    let state = if proto == "tcp" { "0A" } else { "07" };
    sockets(proto)
        .iter()
        .any(|(local, _, st)| *local == port && st == state)
}

/// Client-side TCP sockets to `port` in any state, so that a connection
/// closed and reopened per message shows (the closed ones linger in
/// TIME_WAIT): their local ports.
fn client_ports(port: u16) -> Vec<u16> {
    sockets("tcp")
        .into_iter()
        .filter(|(_, remote, _)| *remote == port)
        .map(|(local, _, _)| local)
        .collect()
}

/// The states of the client sockets to `port` that are not in `before` (a
/// [`client_ports`] taken earlier), in any state: `["01"]` is one connection,
/// still open.
fn connections_since(port: u16, before: &[u16]) -> Vec<String> {
    sockets("tcp")
        .into_iter()
        .filter(|(local, remote, _)| *remote == port && !before.contains(local))
        .map(|(_, _, st)| st)
        .collect()
}

/// A CA and a server certificate for `localhost` / 127.0.0.1 signed by it.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "relay test CA");
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

fn record<'a>(records: &'a [Value], msgid: &str) -> &'a Value {
    let found: Vec<&Value> = records.iter().filter(|r| r["msgid"] == msgid).collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one record with msgid {msgid}: {records:#?}"
    );
    found[0]
}

/// What rsyslog must report for a [`finding`] message.
fn assert_finding(r: &Value, msgid: &str, input: &str) {
    assert_eq!(r["input"], input, "{r:#}");
    assert_eq!(r["version"], "1", "{r:#}");
    assert_eq!(r["pri"], "130", "local0.crit: {r:#}");
    assert_eq!(r["timestamp"], "2026-11-22T10:00:00.000Z", "{r:#}");
    assert_eq!(r["hostname"], "scanner-01.example", "{r:#}");
    assert_eq!(r["app_name"], "relay-test", "{r:#}");
    assert_eq!(r["procid"], "4242", "{r:#}");
    assert_eq!(r["msgid"], msgid, "{r:#}");
    // The BOM is kept by rsyslog, the UTF-8 text after it intact.
    assert_eq!(r["msg"], format!("\u{feff}{TITLE}"), "{r:#}");
    let sd = &r["vars"]["rfc5424-sd"][SD_ID];
    assert_eq!(sd["event_id"], testing::EVENT_ID, "{r:#}");
    assert_eq!(sd["evidence"], EVIDENCE, "escaped SD value decoded: {r:#}");
    assert_eq!(sd["title"], TITLE, "{r:#}");
    assert_eq!(sd["severity"], "critical", "{r:#}");
    assert_eq!(sd["Tenant"], "Acme", "{r:#}");
}

#[tokio::test]
async fn udp_sends_one_message_per_datagram() {
    let rs = Rsyslog::start();
    let d = deliverer(&["127.0.0.0/8"], None);
    let url = format!("udp://127.0.0.1:{}", rs.udp);
    d.send_syslog(&url, &finding("udp_one"), SEND_TIMEOUT)
        .await
        .unwrap();
    d.send_syslog(
        &url,
        &message("udp_two", json!({"title": "second"})),
        SEND_TIMEOUT,
    )
    .await
    .unwrap();
    let records = rs.wait_for(&["udp_one", "udp_two"]).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_finding(record(&records, "udp_one"), "udp_one", "udp");
    let two = record(&records, "udp_two");
    assert_eq!(two["msg"], "\u{feff}second");
    assert_eq!(two["pri"], "134", "local0.info: {two:#}");

    // A large message (the formatter's caps: MSG 4096 characters, SD values
    // 1024) fits in one datagram and arrives whole.
    let big = message(
        "udp_big",
        json!({"title": "x".repeat(4000), "a": "y".repeat(1000), "b": "z".repeat(1000)}),
    );
    assert!(big.len() > 6000 && big.len() < 65_000, "{}", big.len());
    d.send_syslog(&url, &big, SEND_TIMEOUT).await.unwrap();
    // Over the datagram limit: refused, not cut, and nothing is sent.
    let huge = [b"<134>1 - - - udp_huge - ".as_slice(), &vec![b'x'; 65_001]].concat();
    let e = d.send_syslog(&url, &huge, SEND_TIMEOUT).await.unwrap_err();
    assert!(
        matches!(&e, DeliveryError::Config(m) if m.contains("65000")),
        "{e}"
    );
    let records = rs.wait_for(&["udp_big"]).await;
    assert_eq!(records.len(), 3, "the oversized message was not sent");
    let r = record(&records, "udp_big");
    assert_eq!(r["msg"], format!("\u{feff}{}", "x".repeat(4000)));
    assert_eq!(r["vars"]["rfc5424-sd"][SD_ID]["b"], "z".repeat(1000));
}

#[tokio::test]
async fn tcp_octet_counting_keeps_back_to_back_messages_apart_on_one_connection() {
    let rs = Rsyslog::start();
    let d = deliverer(&["127.0.0.0/8"], None);
    let url = format!("tcp://127.0.0.1:{}", rs.tcp);
    let before = client_ports(rs.tcp);
    // Back to back: the second write follows the first on the same connection.
    d.send_syslog(&url, &finding("tcp_one"), SEND_TIMEOUT)
        .await
        .unwrap();
    d.send_syslog(&url, &finding("tcp_two"), SEND_TIMEOUT)
        .await
        .unwrap();
    // A newline inside MSG: with newline framing rsyslog would split it in two.
    let multiline =
        b"<134>1 2026-11-22T10:00:01Z host-b app-b - tcp_lines - \xef\xbb\xbfline one\nline two";
    d.send_syslog(&url, multiline, SEND_TIMEOUT).await.unwrap();

    let records = rs.wait_for(&["tcp_one", "tcp_two", "tcp_lines"]).await;
    assert_eq!(records.len(), 3, "{records:#?}");
    assert_finding(record(&records, "tcp_one"), "tcp_one", "tcp");
    assert_finding(record(&records, "tcp_two"), "tcp_two", "tcp");
    let lines = record(&records, "tcp_lines");
    assert_eq!(lines["hostname"], "host-b");
    assert_eq!(lines["app_name"], "app-b");
    // rsyslog escapes the control character, but kept it in the one message.
    assert_eq!(lines["msg"], "\u{feff}line one#012line two", "{lines:#}");
    assert_eq!(
        connections_since(rs.tcp, &before),
        ["01"],
        "all messages went over one connection, never closed and reopened"
    );

    // Many concurrent sends share the connection without interleaving frames.
    let n = 200;
    let sends = (0..n).map(|i| {
        let d = d.clone();
        let url = url.clone();
        async move {
            let m = message(
                &format!("burst_{i}"),
                json!({"title": format!("burst message {i}"), "n": i}),
            );
            d.send_syslog(&url, &m, SEND_TIMEOUT).await
        }
    });
    for r in join_all(sends).await {
        r.unwrap();
    }
    let ids: Vec<String> = (0..n).map(|i| format!("burst_{i}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let records = rs.wait_for(&id_refs).await;
    assert_eq!(records.len(), 3 + n, "one record per message");
    for i in 0..n {
        let r = record(&records, &format!("burst_{i}"));
        assert_eq!(r["msg"], format!("\u{feff}burst message {i}"));
        assert_eq!(r["vars"]["rfc5424-sd"][SD_ID]["n"], i.to_string());
    }
    assert_eq!(
        connections_since(rs.tcp, &before),
        ["01"],
        "still one connection"
    );
}

#[tokio::test]
async fn tls_verifies_the_server_with_network_ca_file() {
    let rs = Rsyslog::start();
    // By name: resolved, checked by the guard, verified against the CA.
    let url = format!("tls://localhost:{}", rs.tls);

    // Without the CA the server's certificate is not trusted.
    let untrusting = deliverer(&["127.0.0.0/8", "::1/128"], None);
    let e = untrusting
        .send_syslog(&url, &finding("tls_untrusted"), SEND_TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DeliveryError::Network { reason, .. } if reason.contains("certificate")),
        "{e}"
    );
    assert!(e.retryable());

    let d = deliverer(&["127.0.0.0/8", "::1/128"], Some(&rs.ca()));
    // The refused handshake's socket is not one of the connections counted.
    let before = client_ports(rs.tls);
    d.send_syslog(&url, &finding("tls_one"), SEND_TIMEOUT)
        .await
        .unwrap();
    d.send_syslog(&url, &finding("tls_two"), SEND_TIMEOUT)
        .await
        .unwrap();
    let records = rs.wait_for(&["tls_one", "tls_two"]).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_finding(record(&records, "tls_one"), "tls_one", "tls");
    assert_finding(record(&records, "tls_two"), "tls_two", "tls");
    assert_eq!(
        connections_since(rs.tls, &before),
        ["01"],
        "both messages went over one TLS connection, never closed and reopened"
    );
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_by_the_guard() {
    // A real listener: the guard must refuse before any connection is made.
    let tcp = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let port = tcp.local_addr().unwrap().port();
    let d = deliverer(&[], None);
    for url in [
        format!("tcp://localhost:{port}"),
        format!("tls://localhost:{port}"),
        format!("udp://localhost:{port}"),
        format!("tcp://127.0.0.1:{port}"),
    ] {
        let e = d
            .send_syslog(&url, &finding("blocked"), SEND_TIMEOUT)
            .await
            .unwrap_err();
        match &e {
            DeliveryError::Blocked { addr, why, .. } => {
                assert!(addr.is_loopback(), "{url}: {e}");
                assert_eq!(*why, "loopback", "{url}: {e}");
            }
            other => panic!("{url}: expected Blocked, got {other:?}"),
        }
        assert!(e.to_string().contains("network.allow_private"), "{e}");
        assert!(!e.retryable());
    }
    let accepted = tokio::time::timeout(Duration::from_millis(200), tcp.accept()).await;
    assert!(accepted.is_err(), "no connection was made");
}

/// Runs futures concurrently on the current task and collects their outputs.
async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("send task"));
    }
    out
}

/// The whole chain: `relay serve` with syslog webhooks (`format: syslog`,
/// the wasm plugin) delivering a posted event to rsyslog over TCP and UDP.
#[tokio::test]
async fn the_relay_delivers_syslog_webhooks_to_rsyslog() {
    let rs = Rsyslog::start();
    let before = client_ports(rs.tcp);
    let options = r#"{hostname: scanner-01.example, app_name: relay-test, procid: "4242"}"#;
    let relay = common::Relay::start(&format!(
        r#"webhooks:
  - name: SIEM TCP
    url: tcp://127.0.0.1:{tcp}
    format: syslog
    options: {options}
  - name: SIEM UDP
    url: udp://localhost:{udp}
    format: syslog
    options: {options}
"#,
        tcp = rs.tcp,
        udp = rs.udp,
    ))
    .await;
    let events: Vec<Value> = ["relay_one", "relay_two"]
        .iter()
        .map(|t| {
            json!({"type": t, "time": testing::EVENT_TIME, "data": {
                "title": TITLE, "severity": "critical", "evidence": EVIDENCE, "Tenant": "Acme"}})
        })
        .collect();
    let (status, body) = relay
        .post(
            "/api/v1/events",
            Some(common::INGEST),
            &Value::Array(events),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    let records = rs.wait_for(&["relay_one", "relay_two"]).await;
    assert_eq!(records.len(), 4, "two events × two webhooks: {records:#?}");
    for input in ["tcp", "udp"] {
        for msgid in ["relay_one", "relay_two"] {
            let r = records
                .iter()
                .find(|r| r["input"] == input && r["msgid"] == msgid)
                .unwrap_or_else(|| panic!("no {msgid} over {input}: {records:#?}"));
            assert_eq!(r["hostname"], "scanner-01.example", "{r:#}");
            assert_eq!(r["app_name"], "relay-test", "{r:#}");
            assert_eq!(r["msg"], format!("\u{feff}{TITLE}"), "{r:#}");
            let sd = &r["vars"]["rfc5424-sd"][SD_ID];
            assert_eq!(sd["evidence"], EVIDENCE, "{r:#}");
            assert!(
                sd["event_id"].as_str().is_some_and(|id| !id.is_empty()),
                "{r:#}"
            );
        }
    }
    for webhook in ["siem-tcp", "siem-udp"] {
        let history = relay
            .wait_history(webhook, WAIT, |h| {
                h.len() == 2 && h.iter().all(|a| a["status"] == "succeeded")
            })
            .await;
        assert!(history.iter().all(|a| a["error"].is_null()), "{history:#?}");
    }
    assert_eq!(
        connections_since(rs.tcp, &before),
        ["01"],
        "the relay sent both events over one TCP connection, never closed and reopened"
    );
}
