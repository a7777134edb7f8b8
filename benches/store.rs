//! `cargo bench --bench store`: what the store's writer thread costs per
//! write, without HTTP around it.
//!
//! A real SQLite file in a temp dir (WAL, `synchronous=FULL`, as the relay
//! runs it) and `TASKS` tasks on a two-worker runtime, each doing what one
//! event with one webhook costs the store: the ingest write (the event and
//! its delivery) then the outcome write (the attempt record and the
//! delivery's new status), for `SECS` seconds. Prints writes/s and the
//! writer thread's CPU time per write (from `/proc`), median of `ROUNDS`
//! rounds on fresh databases.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use relay::event::{Event, new_id};
use relay::history::{Attempt, Status};
use relay::store::{self, AttemptRecord, BreakerChange, NewEvent, Storage, Store, Target};
use support::{median, stat_cpu_secs};

const TASKS: usize = 48;
const SECS: f64 = 2.0;
const ROUNDS: usize = 3;

/// CPU seconds of the store's writer thread (its name is cut to 15 bytes).
fn writer_cpu_s() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.starts_with("relay-store-wri"))
        })
        .filter_map(|t| stat_cpu_secs(&t.path().join("stat")))
        .sum()
}

fn event(data: &serde_json::Value) -> Event {
    Event {
        id: new_id(),
        event_type: "critical_finding".into(),
        time: "2026-11-22T10:00:00Z".into(),
        data: data.clone(),
    }
}

fn attempt(e: &Event, delivery_id: &str) -> Attempt {
    Attempt {
        id: new_id(),
        delivery_id: delivery_id.to_owned(),
        webhook_id: "bench".into(),
        event_id: e.id.clone(),
        event_type: e.event_type.clone(),
        attempt: 1,
        status: Status::Succeeded,
        status_code: Some(200),
        success: true,
        error: None,
        response_body: Some("ok".into()),
        duration_ms: 1,
        warnings: vec![],
        created_at: "2026-11-22T10:00:00.000Z".into(),
        created_at_ms: 0,
    }
}

/// One round: (writes/s, writer CPU µs per write).
async fn round(data: &serde_json::Value) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_sqlite(&dir.path().join("bench.db")).expect("store");
    let writes = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(SECS);
    let cpu0 = writer_cpu_s();
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (store, writes, data) = (store.clone(), writes.clone(), data.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let e = event(&data);
                    let target = Target {
                        delivery_id: new_id(),
                        webhook_id: "bench".into(),
                        start: relay::store::Start::Due,
                    };
                    let a = attempt(&e, &target.delivery_id);
                    let body = store::event_json(&e).expect("event json");
                    let new = NewEvent {
                        digests: vec![],
                        dedup: None,
                        event: e,
                        body,
                        targets: vec![target],
                        held: vec![],
                        decisions: vec![],
                    };
                    store.accept(vec![new]).await.expect("ingest write");
                    store
                        .record_attempt(AttemptRecord {
                            catch_all: None,
                            attempt: a,
                            due_at: None,
                            breaker: BreakerChange::None,
                            destination_state: None,
                        })
                        .await
                        .expect("outcome write");
                    writes.fetch_add(2, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let secs = start.elapsed().as_secs_f64();
    let n = writes.load(Ordering::Relaxed).max(1) as f64;
    (n / secs, (writer_cpu_s() - cpu0) * 1e6 / n)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let data = serde_json::json!({
        "title": "SQL injection in /login allows authentication bypass",
        "severity": "critical",
        "tenant_name": "Acme Corporation",
        "description": "The login form concatenates the username into a SQL query. An attacker can log in as any user by sending a crafted username. Parameterise the query and review the other endpoints that build SQL by hand.",
        "asset": "https://app.acme.example/login",
        "category": "Injection",
        "rule": "sqli-login-001",
        "host": "web-01.acme.internal",
        "cvss": 9.8
    });
    let rounds: Vec<(f64, f64)> = (0..ROUNDS).map(|_| rt.block_on(round(&data))).collect();
    for (i, (rate, cpu)) in rounds.iter().enumerate() {
        println!(
            "round {}/{ROUNDS}: {rate:.0} writes/s, writer CPU {cpu:.2} µs/write",
            i + 1
        );
    }
    println!(
        "store, {TASKS} tasks, an ingest write and an outcome write per event: {:.0} writes/s, writer CPU {:.2} µs per write (median of {ROUNDS})",
        median(rounds.iter().map(|r| r.0).collect()),
        median(rounds.iter().map(|r| r.1).collect()),
    );
}
