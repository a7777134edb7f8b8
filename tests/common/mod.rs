//! Test harness: the real `relay` binary on a loopback port, a real hyper
//! receiver, and a small HTTP client. Every wait is bounded.
#![allow(dead_code)]

pub mod browser;
pub mod pg;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

pub const INGEST: &str = "test-ingest-token-0123456789";
pub const ADMIN: &str = "test-admin-token-0123456789";
pub const VIEWER: &str = "test-viewer-token-0123456789";

/// Tokens and network settings every test config starts with, on a SQLite
/// file at `db`.
pub fn base_config(db: &Path) -> String {
    base_config_with_storage(&sqlite_storage(db))
}

/// The `storage:` block of a SQLite file.
pub fn sqlite_storage(db: &Path) -> String {
    format!("storage:\n  sqlite: {}\n", db.display())
}

/// [`base_config`] with the given `storage:` block (YAML, e.g.
/// `"storage:\n  postgres: postgres://...\n"`).
pub fn base_config_with_storage(storage: &str) -> String {
    format!(
        r#"listen: 127.0.0.1:{{PORT}}
{storage}auth:
  tokens:
    - {{ name: scanner, token: "${{T_INGEST}}", role: ingest }}
    - {{ name: ops, token: "${{T_ADMIN}}", role: admin }}
    - {{ name: auditor, token: "${{T_VIEWER}}", role: viewer }}
network:
  allow_private: [127.0.0.0/8, "::1/128"]
  allow_http: true
"#
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running relay process.
pub struct Relay {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub config_path: PathBuf,
    child: Option<Child>,
    runs: usize,
}

impl Relay {
    /// Starts the relay with `base_config` (a SQLite file in its temp dir)
    /// followed by `extra` YAML.
    pub async fn start(extra: &str) -> Relay {
        Relay::start_on(None, extra).await
    }

    /// Starts the relay on the given `storage:` block (see
    /// [`base_config_with_storage`]) followed by `extra` YAML; `None` is a
    /// SQLite file in the relay's temp dir.
    pub async fn start_on(storage: Option<&str>, extra: &str) -> Relay {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let storage = storage
            .map(str::to_owned)
            .unwrap_or_else(|| sqlite_storage(&dir.path().join("relay.db")));
        let yaml = base_config_with_storage(&storage).replace("{PORT}", &port.to_string()) + extra;
        let config_path = dir.path().join("relay.yaml");
        std::fs::write(&config_path, yaml).expect("write config");
        let mut relay = Relay {
            dir,
            port,
            config_path,
            child: None,
            runs: 0,
        };
        relay.spawn().await;
        relay
    }

    pub fn log_path(&self, run: usize) -> PathBuf {
        self.dir.path().join(format!("relay-{run}.log"))
    }

    /// Everything the relay has logged so far, over all runs.
    pub fn logs(&self) -> String {
        (0..self.runs)
            .map(|r| std::fs::read_to_string(self.log_path(r)).unwrap_or_default())
            .collect()
    }

    pub async fn spawn(&mut self) {
        let log = std::fs::File::create(self.log_path(self.runs)).expect("log file");
        self.runs += 1;
        let child = Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .env("T_INGEST", INGEST)
            .env("T_ADMIN", ADMIN)
            .env("T_VIEWER", VIEWER)
            .env("RELAY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn relay");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = self.get("/healthz", None).await {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "relay exited with {status} during start-up:\n{}",
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "relay did not come up:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id of the running relay.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends a signal by name (e.g. `HUP`) to the running relay with kill(1).
    pub fn signal(&self, name: &str) {
        let pid = self.pid().expect("the relay is running");
        let status = Command::new("kill")
            .args(["-s", name, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} {pid} failed");
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// SIGTERM (the graceful stop) and waits, at most `timeout`, for the
    /// process to exit; SIGKILL after that. Returns whether it exited by
    /// itself.
    pub async fn stop(&mut self, timeout: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-s", "TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// A counter or gauge from `/metrics` (the sample with exactly this
    /// name and labels, e.g. `relay_delivery_attempts_total{status="succeeded"}`).
    pub async fn metric(&self, sample: &str) -> Option<u64> {
        let (status, body) = self.get("/metrics", Some(ADMIN)).await.ok()?;
        if status != 200 {
            return None;
        }
        let text = body.as_str()?.to_owned();
        text.lines().find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample).then(|| value.parse::<f64>().ok().map(|v| v as u64))?
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Result<(u16, Value), String> {
        request("GET", &self.url(path), token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        request(
            "POST",
            &self.url(path),
            token,
            Some(Bytes::from(body.to_string())),
        )
        .await
        .expect("relay reachable")
    }

    /// Any method with a JSON body and a token.
    pub async fn request_json(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: &Value,
    ) -> (u16, Value) {
        request(
            method,
            &self.url(path),
            Some(token),
            Some(Bytes::from(body.to_string())),
        )
        .await
        .expect("relay reachable")
    }

    pub async fn post_raw(&self, path: &str, token: Option<&str>, body: Bytes) -> (u16, Value) {
        request("POST", &self.url(path), token, Some(body))
            .await
            .expect("relay reachable")
    }

    /// Polls the delivery history of a webhook until `done` holds (≤ timeout).
    pub async fn wait_history(
        &self,
        webhook: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self
                .get(
                    &format!("/api/v1/webhooks/{webhook}/deliveries?limit=1000"),
                    Some(ADMIN),
                )
                .await
                .expect("history");
            assert_eq!(status, 200, "{body}");
            let data = body["data"].as_array().cloned().unwrap_or_default();
            if done(&data) {
                return data;
            }
            assert!(
                Instant::now() < deadline,
                "history of {webhook} never satisfied the test: {data:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub async fn request(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Bytes>,
) -> Result<(u16, Value), String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    Ok((status, value))
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: String::new(),
            delay: Duration::ZERO,
        }
    }
}

/// A real HTTP receiver on loopback. Answers from its script, then 200.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<Received>>>,
    pub script: Arc<Mutex<VecDeque<Reply>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::start_on(0).await
    }

    pub async fn start_on(port: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let r = Receiver {
            addr,
            got: Default::default(),
            script: Default::default(),
        };
        let me = r.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let me = me.clone();
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().to_string();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            let reply = me
                                .script
                                .lock()
                                .unwrap()
                                .pop_front()
                                .unwrap_or(Reply::status(200));
                            me.got.lock().unwrap().push(Received {
                                method,
                                path,
                                headers,
                                body,
                                at: Instant::now(),
                            });
                            tokio::time::sleep(reply.delay).await;
                            let mut resp = http::Response::builder().status(reply.status);
                            for (k, v) in &reply.headers {
                                resp = resp.header(k, v);
                            }
                            Ok::<_, std::convert::Infallible>(
                                resp.body(Full::new(Bytes::from(reply.body))).unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        r
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn push(&self, reply: Reply) {
        self.script.lock().unwrap().push_back(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (≤ timeout).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "receiver got {} of {n} requests in {timeout:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The lease of a test relay on Postgres: short, so that a restarted or
/// killed relay's deliveries are taken over within seconds.
pub const PG_TEST_LEASE_MS: u64 = 3000;

/// Which store a test's relay runs on (see [`on_both_stores!`]).
#[derive(Debug, Clone)]
pub enum Backend {
    /// A SQLite file in the relay's temp dir.
    Sqlite,
    /// A fresh database (its URL) on this test binary's cluster.
    Postgres(String),
}

impl Backend {
    /// A fresh database on the shared cluster (started on first use).
    pub async fn postgres() -> Backend {
        Backend::Postgres(pg::PgCluster::shared().fresh_db().await)
    }

    /// The `storage:` block, `None` for the default SQLite file.
    pub fn storage(&self) -> Option<String> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres(url) => Some(format!(
                "storage:\n  postgres: \"{url}\"\n  lease_ms: {PG_TEST_LEASE_MS}\n"
            )),
        }
    }

    /// Opens this store directly (no relay), as `relay.yaml`'s `storage:`
    /// would; the SQLite file goes in `dir`.
    pub async fn open_store(&self, dir: &Path) -> relay::store::Store {
        let storage = self
            .storage()
            .unwrap_or_else(|| sqlite_storage(&dir.join("store.db")));
        let cfg = relay::config::Config::parse(&storage, "t.yaml").expect("storage config");
        relay::store::Store::open(&cfg.storage)
            .await
            .expect("store")
    }

    /// Starts a relay on this store with `extra` YAML.
    pub async fn start(&self, extra: &str) -> Relay {
        Relay::start_on(self.storage().as_deref(), extra).await
    }
}

/// Runs one test body against both stores: `NAME::sqlite` and
/// `NAME::postgres` (a fresh database on the test binary's cluster). The
/// body gets the [`Backend`] and starts its relays with `backend.start`.
#[macro_export]
macro_rules! on_both_stores {
    ($(#[$doc:meta])* async fn $name:ident($backend:ident) $body:block) => {
        $(#[$doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($backend: $crate::common::Backend) $body

            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                body($crate::common::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                body($crate::common::Backend::postgres().await).await
            }
        }
    };
}

/// A request with any headers and body; the status, headers and body text
/// (for HTML pages, cookies and redirects: no redirect is followed).
pub async fn raw_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Bytes>,
) -> (u16, http::HeaderMap, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(body.unwrap_or_default()))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("answer within 30 s")
        .expect("answer");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}
