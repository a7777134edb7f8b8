//! A headless Chromium driven over the DevTools protocol (a WebSocket to
//! one page), for the console's browser tests. Chromium runs in a temp
//! profile on a loopback debugging port and is killed on drop. Every wait
//! is bounded.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// The Chromium binary: `RELAY_CHROMIUM`, or Debian's.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("RELAY_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: AtomicU64,
    /// JavaScript dialogs (alert, confirm, prompt) the page opened.
    dialogs: Arc<Mutex<Vec<String>>>,
}

impl Browser {
    pub async fn start() -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(chromium_path())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); .ci/install-test-deps installs Debian's chromium",
                    chromium_path().display()
                )
            });
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/…"
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    let _ = tx.send(line[at..].trim().to_owned());
                }
            }
        });
        let browser_ws = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium printed its DevTools address within 30 s");
        let port: u16 = browser_ws
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the DevTools address");
        // The page target of about:blank.
        let deadline = Instant::now() + Duration::from_secs(20);
        let page_ws = loop {
            let list = super::request(
                "GET",
                &format!("http://127.0.0.1:{port}/json/list"),
                None,
                None,
            )
            .await;
            if let Ok((200, Value::Array(targets))) = list
                && let Some(ws) = targets
                    .iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            {
                break ws.to_owned();
            }
            assert!(Instant::now() < deadline, "no page target in chromium");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(20),
            tokio_tungstenite::connect_async(page_ws.as_str()),
        )
        .await
        .expect("DevTools connect in time")
        .expect("DevTools WebSocket");
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let dialogs: Arc<Mutex<Vec<String>>> = Arc::default();
        let (p, d, o) = (pending.clone(), dialogs.clone(), out.clone());
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let Message::Text(text) = m else { continue };
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if let Some(id) = v["id"].as_u64() {
                    if let Some(tx) = p.lock().unwrap().remove(&id) {
                        let _ = tx.send(v);
                    }
                } else if v["method"] == "Page.javascriptDialogOpening" {
                    d.lock()
                        .unwrap()
                        .push(v["params"]["message"].as_str().unwrap_or("").to_owned());
                    // Dismiss it, or the page would hang.
                    let _ = o.send(Message::text(
                        json!({"id": 0, "method": "Page.handleJavaScriptDialog", "params": {"accept": false}})
                            .to_string(),
                    ));
                }
            }
        });
        let b = Browser {
            child,
            _profile: profile,
            out,
            pending,
            next_id: AtomicU64::new(1),
            dialogs,
        };
        b.call("Page.enable", json!({})).await;
        b.call("Runtime.enable", json!({})).await;
        b
    }

    /// One DevTools command; its `result` (panics on an error answer).
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.out
            .send(Message::text(
                json!({"id": id, "method": method, "params": params}).to_string(),
            ))
            .expect("DevTools connection open");
        let v = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer in 30 s"))
            .expect("answer");
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    /// Evaluates an expression in the page; its value (JSON).
    pub async fn eval(&self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            r.get("exceptionDetails").is_none(),
            "{expression}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Opens a URL and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_loaded().await;
    }

    /// Waits until the document (a new one after a navigation) is complete.
    pub async fn wait_loaded(&self) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(20),
        )
        .await;
    }

    /// Waits until `condition` (a JS expression) is true.
    pub async fn wait_for(&self, condition: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self
                .call(
                    "Runtime.evaluate",
                    json!({"expression": format!("!!({condition})"), "returnByValue": true}),
                )
                .await;
            if r["result"]["value"] == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for {condition}; page: {}",
                self.text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element `selector` names and waits for the page that
    /// follows to load.
    pub async fn click_and_wait(&self, selector: &str) {
        let clicked = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({}); if (!e) return false; window.__before_click = 1; e.click(); return true; }})()",
                json!(selector)
            ))
            .await;
        assert_eq!(clicked, json!(true), "no element {selector}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let gone = self.eval("window.__before_click === undefined").await;
            if gone == json!(true) {
                break;
            }
            assert!(Instant::now() < deadline, "{selector}: no new page in 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.wait_loaded().await;
    }

    /// Types into an input (sets its value as a user would).
    pub async fn fill(&self, selector: &str, value: &str) {
        let ok = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({}); if (!e) return false; e.focus(); e.value = {}; return true; }})()",
                json!(selector),
                json!(value)
            ))
            .await;
        assert_eq!(ok, json!(true), "no input {selector}");
    }

    pub async fn text(&self) -> String {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": "document.body ? document.body.innerText : ''", "returnByValue": true}),
            )
            .await;
        r["result"]["value"].as_str().unwrap_or_default().to_owned()
    }

    /// The page's source as the browser holds it now.
    pub async fn html(&self) -> String {
        self.eval("document.documentElement.outerHTML")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn count(&self, selector: &str) -> u64 {
        self.eval(&format!(
            "document.querySelectorAll({}).length",
            json!(selector)
        ))
        .await
        .as_u64()
        .unwrap_or(0)
    }

    pub fn dialogs(&self) -> Vec<String> {
        self.dialogs.lock().unwrap().clone()
    }

    /// Writes a PNG of the page (full height) to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or_default())
            .expect("base64 PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the test run writes its screenshots: `target/console-screenshots/`.
pub fn screenshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/console-screenshots")
        .join(format!("{name}.png"))
}
