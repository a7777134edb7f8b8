//! `cargo bench --bench store`: what each store backend costs per write,
//! without HTTP around it.
//!
//! `TASKS` tasks on a two-worker runtime, each doing what one event with
//! one webhook costs the store: the ingest write (the event and its
//! delivery) then the outcome write (the attempt record and the delivery's
//! new status), for `SECS` seconds, through `Storage::accept` and
//! `record_attempt`. Median of `ROUNDS` rounds on fresh databases:
//!
//! - **sqlite**: a real SQLite file in a temp dir (WAL, `synchronous=FULL`,
//!   as the relay runs it); writes/s and the writer thread's CPU time per
//!   write (from `/proc`).
//! - **postgres**: a private cluster on this machine (the tests' harness,
//!   `tests/common/pg.rs`, with the server's default durable settings) and
//!   a fresh database per round; writes/s, this process's CPU per write
//!   (the store's client side) and the database server's processes' CPU per
//!   write. Skipped, with a line saying so, when no PostgreSQL server
//!   binaries are installed.
//!
//! - **sqlite_digest**: the sqlite load with every event also joining a
//!   digest window, as `routing_20` has it (one of 10 webhooks, one group
//!   each, `max_events` 1,000): the writer's CPU per write, and its extra
//!   per event over **sqlite** — what a digest membership costs the one
//!   writer (issue 15).
//!
//! `STORE_ONLY` (comma-separated: `sqlite`, `sqlite_digest`, `postgres`)
//! runs some of them.

mod support;

#[path = "../tests/common/pg.rs"]
mod pg;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use relay::event::{Event, new_id};
use relay::history::{Attempt, Status};
use relay::store::postgres::PgStore;
use relay::store::{
    self, AttemptRecord, BreakerChange, DigestMember, NewEvent, Storage, Store, Target,
};
use support::{db_cpu_secs, free_port, median, stat_cpu_secs};

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
        data: data.clone().into(),
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

/// CPU seconds of this process.
fn own_cpu_s() -> f64 {
    stat_cpu_secs(std::path::Path::new("/proc/self/stat")).unwrap_or(0.0)
}

/// What one round measured, per write where it says so.
#[derive(Clone, Copy)]
struct Round {
    writes_per_s: f64,
    /// CPU µs per write of what `cpu` measured (SQLite: its writer
    /// thread; Postgres: this process, the store's client side).
    cpu_us: f64,
    /// The database server's CPU µs per write (Postgres).
    db_cpu_us: Option<f64>,
}

/// Digest windows the `sqlite_digest` load spreads its events over.
const DIGEST_WEBHOOKS: usize = 10;

/// The digest membership of the `seq`th event of a task (`routing_20`'s:
/// one webhook per tenant, grouped by tenant).
fn digest_member(seq: usize) -> DigestMember {
    let t = seq % DIGEST_WEBHOOKS;
    DigestMember {
        webhook_id: format!("digest-{t}"),
        webhook_name: format!("digest-{t}"),
        group: format!(r#"{{"tenant_name":"Acme Corporation {t}"}}"#),
        window_ms: 2_000,
        max_events: 1_000,
    }
}

/// One round of the load on `store`; `cpu` reads the CPU seconds it
/// charges to the store, `db_cpu` those of a database server. With
/// `digests`, every event also joins a digest window ([`digest_member`]).
async fn round(
    store: Store,
    data: &serde_json::Value,
    digests: bool,
    cpu: fn() -> f64,
    db_cpu: impl Fn() -> Option<f64>,
) -> Round {
    let writes = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(SECS);
    let (cpu0, db0) = (cpu(), db_cpu());
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (store, writes, data) = (store.clone(), writes.clone(), data.clone());
            tokio::spawn(async move {
                let mut seq = task;
                while Instant::now() < until {
                    seq += 1;
                    let e = event(&data);
                    let target = Target {
                        delivery_id: new_id(),
                        webhook_id: "bench".into(),
                        start: relay::store::Start::Due,
                    };
                    let a = attempt(&e, &target.delivery_id);
                    let body = store::event_json(&e).expect("event json");
                    let new = NewEvent {
                        digests: if digests {
                            vec![digest_member(seq)]
                        } else {
                            vec![]
                        },
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
    Round {
        writes_per_s: n / secs,
        cpu_us: (cpu() - cpu0) * 1e6 / n,
        db_cpu_us: db0.zip(db_cpu()).map(|(a, b)| (b - a) * 1e6 / n),
    }
}

/// The median of each figure of `rounds`, printed after each round's line.
fn summary(name: &str, cpu: &str, rounds: &[Round]) -> Round {
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "{name} round {}/{ROUNDS}: {:.0} writes/s, {cpu} {:.2} µs/write{}",
            i + 1,
            r.writes_per_s,
            r.cpu_us,
            r.db_cpu_us
                .map(|d| format!(", database CPU {d:.2} µs/write"))
                .unwrap_or_default()
        );
    }
    let m = Round {
        writes_per_s: median(rounds.iter().map(|r| r.writes_per_s).collect()),
        cpu_us: median(rounds.iter().map(|r| r.cpu_us).collect()),
        db_cpu_us: rounds
            .iter()
            .map(|r| r.db_cpu_us)
            .collect::<Option<Vec<f64>>>()
            .map(median),
    };
    println!(
        "{name}, {TASKS} tasks, an ingest write and an outcome write per event: {:.0} writes/s, {cpu} {:.2} µs per write{} (median of {ROUNDS})",
        m.writes_per_s,
        m.cpu_us,
        m.db_cpu_us
            .map(|d| format!(", database CPU {d:.2} µs per write"))
            .unwrap_or_default()
    );
    m
}

fn sqlite(rt: &tokio::runtime::Runtime, data: &serde_json::Value, digests: bool) -> Round {
    let rounds: Vec<Round> = (0..ROUNDS)
        .map(|_| {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = Store::open_sqlite(&dir.path().join("bench.db")).expect("store");
            let r = rt.block_on(round(store.clone(), data, digests, writer_cpu_s, || None));
            if digests {
                rt.block_on(seal_all(&store));
            }
            r
        })
        .collect();
    let name = if digests { "sqlite_digest" } else { "sqlite" };
    summary(name, "writer CPU", &rounds)
}

/// Seals every window the `sqlite_digest` load left (full or open) and
/// prints what reading their members back cost: the digester's work at
/// a window's end, on the database the load just wrote.
async fn seal_all(store: &Store) {
    let (mut windows, mut members) = (0usize, 0usize);
    let cpu0 = own_cpu_s();
    let start = Instant::now();
    // A sealed window stays due until its digest is stored (which this
    // does not do): each is sealed once.
    let mut sealed_ids = std::collections::HashSet::new();
    loop {
        let due = store.due_digests(i64::MAX).await.expect("due digests");
        let fresh: Vec<String> = due
            .due
            .into_iter()
            .filter(|id| sealed_ids.insert(id.clone()))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for id in &fresh {
            if let Some(sealed) = store.seal_digest(id).await.expect("seal") {
                windows += 1;
                members += sealed.members.len();
            }
        }
    }
    let (secs, cpu) = (start.elapsed().as_secs_f64(), own_cpu_s() - cpu0);
    let per = members.max(1) as f64;
    println!(
        "sqlite_digest sealing: {windows} windows, {members} members read back: {:.2} µs per member, process CPU {:.2} µs per member",
        secs * 1e6 / per,
        cpu * 1e6 / per
    );
}

fn postgres(rt: &tokio::runtime::Runtime, data: &serde_json::Value) -> Option<Round> {
    if pg::pg_bin().is_none() {
        println!("postgres: skipped (no PostgreSQL server binaries; see .ci/install-test-deps)");
        return None;
    }
    let cluster = pg::PgCluster::start(pg::DURABLE);
    let postmaster = cluster.postmaster_pid();
    let rounds: Vec<Round> = (0..ROUNDS)
        .map(|_| {
            rt.block_on(async {
                let url = cluster.fresh_db().await;
                let store = PgStore::connect(&url, Duration::from_secs(60))
                    .await
                    .expect("connect to the bench cluster");
                round(Store::Postgres(store), data, false, own_cpu_s, || {
                    postmaster.and_then(db_cpu_secs)
                })
                .await
            })
        })
        .collect();
    Some(summary("postgres", "process CPU", &rounds))
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
    let only = std::env::var("STORE_ONLY").unwrap_or_default();
    let wants = |name: &str| only.is_empty() || only.split(',').any(|o| o.trim() == name);
    let lite = wants("sqlite").then(|| sqlite(&rt, &data, false));
    if let Some(d) = wants("sqlite_digest").then(|| sqlite(&rt, &data, true)) {
        match lite {
            // Two writes per event (ingest, outcome); the membership is in
            // the ingest write.
            Some(l) => println!(
                "sqlite_digest − sqlite: writer CPU {:+.2} µs per event ({:.2} × sqlite's writes/s)",
                2.0 * (d.cpu_us - l.cpu_us),
                d.writes_per_s / l.writes_per_s
            ),
            None => println!("sqlite_digest − sqlite: not measured (STORE_ONLY left sqlite out)"),
        }
    }
    let shared = wants("postgres").then(|| postgres(&rt, &data)).flatten();
    if let (Some(l), Some(p)) = (lite, shared) {
        println!(
            "postgres / sqlite: {:.2} × the writes/s",
            p.writes_per_s / l.writes_per_s
        );
    }
}
