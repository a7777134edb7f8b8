//! `cargo bench --bench console`: the console with 100,000 attempts in the
//! history. Fills a SQLite store with `ATTEMPTS` attempts of one webhook
//! (one in 100 failed) through `Storage`, starts the real binary on it,
//! signs in, and prints the time to first byte of a webhook's deliveries
//! page: the first page, a deep page (a cursor ~99,000 attempts back), and
//! the first page filtered to the rare failures. Median of `RUNS` requests
//! each, over a fresh connection (`Connection: close`).

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use relay::event::{Event, new_id};
use relay::history::{Attempt, AttemptError, Status};
use relay::store::{self, AttemptRecord, BreakerChange, NewEvent, Storage, Store, Target};
use support::median;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ATTEMPTS: usize = 100_000;
const BATCH: usize = 500;
const RUNS: usize = 15;
const ADMIN: &str = "bench-admin-token-0123456789";

fn attempt(e: &Event, delivery_id: &str, n: usize) -> Attempt {
    let failed = n.is_multiple_of(100);
    Attempt {
        id: new_id(),
        delivery_id: delivery_id.to_owned(),
        webhook_id: "bench".into(),
        event_id: e.id.clone(),
        event_type: e.event_type.clone(),
        attempt: 1,
        status: if failed {
            Status::Failed
        } else {
            Status::Succeeded
        },
        status_code: Some(if failed { 500 } else { 200 }),
        success: !failed,
        error: failed.then(|| AttemptError {
            kind: "http_status".into(),
            origin: "upstream".into(),
            retryable: true,
            message: "127.0.0.1 answered HTTP 500".into(),
        }),
        response_body: Some(if failed { "down" } else { "ok" }.into()),
        duration_ms: 3,
        warnings: vec![],
        created_at: relay::event::rfc3339_ms(relay::event::now_ms()),
        created_at_ms: relay::event::now_ms(),
    }
}

/// Writes `ATTEMPTS` events, deliveries and attempts for webhook `bench`.
async fn fill(store: &Store) {
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let mut n = w * (ATTEMPTS / 8);
                let end = (w + 1) * (ATTEMPTS / 8);
                while n < end {
                    let mut batch = Vec::new();
                    let mut records = Vec::new();
                    for _ in 0..BATCH.min(end - n) {
                        let e = Event {
                            id: new_id(),
                            event_type: "critical_finding".into(),
                            time: relay::event::rfc3339_ms(relay::event::now_ms()),
                            data: serde_json::json!({"title": format!("Finding {n}"), "severity": "high"}).into(),
                        };
                        let target = Target {
                            delivery_id: new_id(),
                            webhook_id: "bench".into(),
                            start: store::Start::Due,
                        };
                        records.push(attempt(&e, &target.delivery_id, n));
                        batch.push(NewEvent {
                            body: store::event_json(&e).expect("event json"),
                            event: e,
                            targets: vec![target],
                            held: vec![],
                            decisions: vec![],
                            digests: vec![],
                            dedup: None,
                        });
                        n += 1;
                    }
                    store.accept(batch).await.expect("accept");
                    for a in records {
                        store
                            .record_attempt(AttemptRecord {
                                attempt: a,
                                due_at: None,
                                breaker: BreakerChange::None,
                                destination_state: None,
                                catch_all: None,
                            })
                            .await
                            .expect("record");
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("fill task");
    }
    assert_eq!(done.load(Ordering::Relaxed), ATTEMPTS);
}

/// One GET over a fresh connection: (status, time to first byte, body).
async fn get(addr: SocketAddr, path: &str, cookie: &str) -> (u16, Duration, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nAuthorization: Bearer {ADMIN}\r\nConnection: close\r\n\r\n"
    );
    let start = Instant::now();
    s.write_all(req.as_bytes()).await.expect("write");
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(60), s.read(&mut first))
        .await
        .expect("an answer within 60 s")
        .expect("read");
    let ttfb = start.elapsed();
    assert_eq!(n, 1, "the relay closed without answering {path}");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.expect("read body");
    let text = String::from_utf8_lossy(&first).into_owned() + &String::from_utf8_lossy(&rest);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, ttfb, text)
}

async fn post_json(addr: SocketAddr, path: &str, body: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        let db = dir.path().join("data").join("relay.db");
        let t = Instant::now();
        {
            let store = Store::open_sqlite(&db).expect("store");
            fill(&store).await;
        }
        println!(
            "filled {ATTEMPTS} attempts in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let yaml = format!(
            "listen: 127.0.0.1:{port}\nstorage:\n  sqlite: {}\nplugins:\n  dir: {}\nauth:\n  tokens:\n    - {{ name: ops, token: \"{ADMIN}\", role: admin }}\nnetwork:\n  allow_private: [127.0.0.0/8]\n  allow_http: true\nwebhooks:\n  - id: bench\n    name: Bench\n    url: http://127.0.0.1:9/never\n    is_active: false\n",
            db.display(),
            dir.path().join("plugins").display()
        );
        std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins dir");
        let config = dir.path().join("relay.yaml");
        std::fs::write(&config, yaml).expect("config");
        let _relay = Relay(
            Command::new(env!("CARGO_BIN_EXE_relay"))
                .args(["serve", "--config"])
                .arg(&config)
                .env("RELAY_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn relay"),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "the relay did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let answer = post_json(addr, "/ui/login", &format!("{{\"token\": \"{ADMIN}\"}}")).await;
        let cookie = answer
            .lines()
            .find_map(|l| l.strip_prefix("set-cookie: "))
            .and_then(|c| c.split(';').next())
            .expect("a session cookie")
            .to_owned();
        // A cursor ~99,000 attempts back, walked through the API.
        let mut cursor = String::new();
        for _ in 0..99 {
            let path = format!(
                "/api/v1/webhooks/bench/deliveries?limit=1000{}",
                if cursor.is_empty() {
                    String::new()
                } else {
                    format!("&cursor={cursor}")
                }
            );
            let (status, _, text) = get(addr, &path, "").await;
            assert_eq!(status, 200, "{text}");
            let body = &text[text.find("\r\n\r\n").expect("body") + 4..];
            let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
            cursor = v["next"].as_str().expect("a next page").to_owned();
        }
        let pages = [
            ("first page", "/ui/webhooks/bench".to_owned()),
            ("deep page (~99,000 back)", format!("/ui/webhooks/bench?cursor={cursor}")),
            ("first page, status=failed (1 in 100)", "/ui/webhooks/bench?status=failed".to_owned()),
            ("live refresh fragment", "/ui/webhooks/bench/rows".to_owned()),
        ];
        for (what, path) in pages {
            let (status, _, text) = get(addr, &path, &cookie).await;
            assert_eq!(status, 200, "{what}: {text}");
            let rows = text.matches("<tr data-delivery=").count();
            assert_eq!(rows, 50, "{what}: a page holds 50 attempts");
            let times: Vec<f64> = {
                let mut v = Vec::new();
                for _ in 0..RUNS {
                    v.push(get(addr, &path, &cookie).await.1.as_secs_f64() * 1000.0);
                }
                v
            };
            let max = times.iter().cloned().fold(0.0, f64::max);
            println!(
                "{what}: time to first byte median {:.2} ms, max {max:.2} ms ({RUNS} requests, 50 rows)",
                median(times)
            );
        }
    });
}
