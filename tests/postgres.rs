//! Several relay processes on one PostgreSQL database (DESIGN.md §13, issue
//! 19): work spreads, every accepted event is delivered, a killed instance's
//! leases are taken over, a lost database is survived, and a bad URL is
//! refused without showing its password. Each test starts its own relays on
//! a fresh database of a cluster it starts (tests/common/pg.rs).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pg::{FAST, PgCluster};
use common::*;
use serde_json::{Value, json};

/// Events of the multi-instance tests.
const EVENTS: usize = 10_000;
/// Events per POST.
const BATCH: usize = 25;
/// Send slots per webhook lane: with `UNRECORDED_PER_SLOT` (2), at most 16
/// attempts of a relay are started and unrecorded when it is killed.
const CONCURRENCY: usize = 8;
const UNRECORDED_PER_SLOT: usize = 2;

fn storage(url: &str) -> String {
    format!("storage:\n  postgres: \"{url}\"\n  lease_ms: {PG_TEST_LEASE_MS}\n")
}

fn extra(rx: &Receiver) -> String {
    format!(
        "delivery:\n  concurrency_per_webhook: {CONCURRENCY}\nwebhooks:\n  - name: Sink\n    url: {}\n",
        rx.url("/sink")
    )
}

/// Which relay (index) answered 202 for which event ids, and when.
#[derive(Default)]
struct Ledger {
    accepted: Vec<(usize, Instant, Vec<String>)>,
}

/// Posts `EVENTS` events in batches, batch k to relay k % 3; a batch a
/// relay does not accept (it is down, or stopping) goes to the next one.
/// `count` follows the events accepted so far.
async fn post_round_robin(urls: Vec<String>, ledger: Arc<Mutex<Ledger>>, count: Arc<AtomicUsize>) {
    let batches: Vec<Vec<String>> = (0..EVENTS)
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|c| c.iter().map(|i| format!("ev-{i}")).collect())
        .collect();
    let next = Arc::new(AtomicUsize::new(0));
    let batches = Arc::new(batches);
    let mut posters = Vec::new();
    for _ in 0..3 {
        let (urls, ledger, count, next, batches) = (
            urls.clone(),
            ledger.clone(),
            count.clone(),
            next.clone(),
            batches.clone(),
        );
        posters.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(ids) = batches.get(k) else { return };
                let body: Vec<Value> = ids
                    .iter()
                    .map(|id| json!({"type": "scan", "id": id, "data": {"k": k}}))
                    .collect();
                let body = bytes::Bytes::from(Value::Array(body).to_string());
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut target = k % urls.len();
                loop {
                    let r = request(
                        "POST",
                        &format!("{}/api/v1/events", urls[target]),
                        Some(INGEST),
                        Some(body.clone()),
                    )
                    .await;
                    if let Ok((202, _)) = r {
                        ledger
                            .lock()
                            .unwrap()
                            .accepted
                            .push((target, Instant::now(), ids.clone()));
                        count.fetch_add(ids.len(), Ordering::SeqCst);
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "batch {k} not accepted by any relay within 60 s: {r:?}"
                    );
                    target = (target + 1) % urls.len();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for p in posters {
        p.await.expect("poster");
    }
}

/// Waits until every event id arrived at the receiver (bounded); returns
/// the arrivals per id.
async fn wait_all_delivered(rx: &Receiver, timeout: Duration) -> HashMap<String, Vec<Instant>> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut seen: HashMap<String, Vec<Instant>> = HashMap::new();
        for r in rx.received() {
            let id = r.json()["id"].as_str().unwrap_or_default().to_owned();
            seen.entry(id).or_default().push(r.at);
        }
        if seen.len() >= EVENTS {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {EVENTS} events delivered within {timeout:?}",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn three_relays(url: &str, rx: &Receiver) -> Vec<Relay> {
    let mut relays = Vec::new();
    for _ in 0..3 {
        relays.push(Relay::start_on(Some(&storage(url)), &extra(rx)).await);
    }
    relays
}

async fn succeeded(relay: &Relay) -> u64 {
    relay
        .metric("relay_delivery_attempts_total{status=\"succeeded\"}")
        .await
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_relays_on_one_database_split_10000_events_and_deliver_each_once() {
    let url = PgCluster::shared().fresh_db().await;
    let rx = Receiver::start().await;
    let relays = three_relays(&url, &rx).await;
    let urls: Vec<String> = relays.iter().map(|r| r.url("")).collect();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let started = Instant::now();
    post_round_robin(urls, ledger.clone(), Arc::new(AtomicUsize::new(0))).await;
    let posted = started.elapsed();
    let seen = wait_all_delivered(&rx, Duration::from_secs(240)).await;
    let took = started.elapsed();
    let ids: HashSet<String> = (0..EVENTS).map(|i| format!("ev-{i}")).collect();
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), ids);
    let duplicates: usize = seen.values().map(|v| v.len() - 1).sum();
    assert_eq!(duplicates, 0, "no instance was killed: no event twice");
    // Every relay answered its share of the batches, and delivered.
    let per_relay: Vec<u64> = {
        let mut v = Vec::new();
        for r in &relays {
            v.push(succeeded(r).await);
        }
        v
    };
    let accepted_by: Vec<usize> = (0..3)
        .map(|i| {
            ledger
                .lock()
                .unwrap()
                .accepted
                .iter()
                .filter(|(r, _, _)| *r == i)
                .map(|(_, _, ids)| ids.len())
                .sum()
        })
        .collect();
    eprintln!(
        "10,000 events: posted in {posted:?}, all delivered in {took:?}; accepted per relay {accepted_by:?}, delivered per relay {per_relay:?}"
    );
    assert_eq!(per_relay.iter().sum::<u64>(), EVENTS as u64);
    for (i, n) in per_relay.iter().enumerate() {
        assert!(
            *n as usize >= EVENTS / 10,
            "relay {i} delivered only {n} of {EVENTS}: {per_relay:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_relay_killed_twice_and_another_restarted_lose_nothing_and_leases_are_taken_over() {
    let url = PgCluster::shared().fresh_db().await;
    let rx = Receiver::start().await;
    let mut relays = three_relays(&url, &rx).await;
    let urls: Vec<String> = relays.iter().map(|r| r.url("")).collect();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let count = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let posting = tokio::spawn(post_round_robin(urls, ledger.clone(), count.clone()));
    let wait_count = |n: usize| {
        let count = count.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while count.load(Ordering::SeqCst) < n {
                assert!(Instant::now() < deadline, "{n} events never accepted");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    // Relay 0 is killed twice (and started again each time), relay 1 is
    // restarted gracefully.
    // The database as the test sees it: which deliveries were leased, to
    // whom and for how much longer, right after each kill.
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(conn);
    let mut kills = Vec::new();
    for at in [2_000, 5_000] {
        wait_count(at).await;
        relays[0].kill9();
        let (instant, wall_ms) = (Instant::now(), relay::event::now_ms());
        let leased: Vec<(String, String, i64)> = db
            .query(
                "SELECT event_id, owner, (EXTRACT(EPOCH FROM (locked_until - clock_timestamp())) * 1000)::int8
                 FROM deliveries WHERE due_at IS NOT NULL AND locked_until > clock_timestamp()",
                &[],
            )
            .await
            .expect("leases at the kill")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        kills.push((instant, wall_ms, leased));
        tokio::time::sleep(Duration::from_millis(500)).await;
        relays[0].spawn().await;
    }
    wait_count(7_500).await;
    let graceful = relays[1].stop(Duration::from_secs(30)).await;
    relays[1].spawn().await;
    posting.await.expect("posting");
    let seen = wait_all_delivered(&rx, Duration::from_secs(300)).await;
    let took = started.elapsed();
    let ids: HashSet<String> = (0..EVENTS).map(|i| format!("ev-{i}")).collect();
    assert_eq!(
        seen.keys().cloned().collect::<HashSet<_>>(),
        ids,
        "every accepted event delivered: 0 lost"
    );
    assert!(graceful, "relay 1 stopped within its grace");
    // Duplicates only from attempts in flight at a kill: at most the
    // started-but-unrecorded attempts of the killed relay's one lane.
    let duplicates: usize = seen.values().map(|v| v.len() - 1).sum();
    let bound = kills.len() * CONCURRENCY * UNRECORDED_PER_SLOT;
    // Leases of the killed relay. Its owner id is the one among the
    // leases at the kill that records no attempt after it. Its deliveries
    // may reach the receiver before their lease ran out only if their
    // attempt was already in flight at the kill (it arrives within
    // moments); the others are taken over once the lease expired.
    let mut takeovers = Vec::new();
    for (kill, wall_ms, leased) in &kills {
        let live: HashSet<String> = db
            .query(
                "SELECT DISTINCT instance FROM attempts WHERE created_at > $1 AND instance IS NOT NULL",
                &[wall_ms],
            )
            .await
            .expect("instances recording after the kill")
            .iter()
            .map(|r| r.get(0))
            .collect();
        // Leases per owner at the kill; the killed relay's owner is the one
        // with the most leases among those that record nothing after it.
        let mut by_owner: HashMap<&String, usize> = HashMap::new();
        for (_, o, _) in leased {
            *by_owner.entry(o).or_default() += 1;
        }
        let dead_owner = by_owner
            .iter()
            .filter(|(o, _)| !live.contains(**o))
            .max_by_key(|(_, n)| **n)
            .map(|(o, _)| (*o).clone())
            .unwrap_or_else(|| {
                panic!("no lease of the killed relay at the kill: {by_owner:?}; recording after it {live:?}")
            });
        if by_owner.keys().filter(|o| !live.contains(**o)).count() > 1 {
            eprintln!("silent owners at the kill: {by_owner:?}; recording after it: {live:?}");
        }
        let dead: Vec<&(String, String, i64)> = leased
            .iter()
            .filter(|(_, owner, _)| *owner == dead_owner)
            .collect();
        let (mut early, mut first_after, mut last) = (0, None::<Duration>, Duration::ZERO);
        for (event, _, left_ms) in &dead {
            let Some(at) = seen[event].iter().find(|t| *t > kill) else {
                continue;
            };
            let after = at.saturating_duration_since(*kill);
            let expiry = Duration::from_millis(*left_ms as u64);
            if after + Duration::from_millis(100) < expiry {
                assert!(
                    after < Duration::from_millis(500),
                    "{event} went out {after:?} after the kill, its lease held for {expiry:?}"
                );
                early += 1;
            } else {
                first_after = Some(first_after.map_or(after, |f| f.min(after)));
            }
            last = last.max(after);
        }
        takeovers.push((dead.len(), early, first_after, last));
    }
    eprintln!(
        "kill test: all {EVENTS} delivered in {took:?}; duplicates {duplicates} (bound {bound}); per kill (deliveries leased by the dead relay, sent by it before the kill and arriving after, first takeover, last arrival; after the kill): {takeovers:?}"
    );
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates, more than the {bound} attempts that can be in flight at {} kills",
        kills.len()
    );
    let lease = Duration::from_millis(PG_TEST_LEASE_MS);
    for (orphaned, early, taken, _) in &takeovers {
        assert!(*orphaned > 0, "the kill orphaned nothing to take over");
        assert!(
            *early <= CONCURRENCY * UNRECORDED_PER_SLOT,
            "{early} of the dead relay's leased deliveries arrived after the kill but before their lease ran out"
        );
        let taken = taken.expect("the orphaned deliveries were taken over");
        // Claimable once the lease ran out; an instance claims when its lane
        // has room, and under this load the others' lanes are full of their
        // own ingest (on a loaded 2-core machine: 2.5–9.5 s after the kill
        // with a 3 s lease). All of them arrive: checked above.
        assert!(
            taken <= lease + Duration::from_secs(20),
            "the first takeover came {taken:?} after the kill (lease {lease:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_or_unreachable_postgres_url_is_refused_by_check_and_serve_without_its_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    let closed = free_port();
    let cases = [
        (
            format!("postgres://relay:Sup3rSecretPw@127.0.0.1:{closed}/relay"),
            format!("127.0.0.1:{closed}"),
        ),
        (
            "postgres://relay:Sup3rSecretPw@127.0.0.1:notaport/relay".to_string(),
            "not a valid PostgreSQL URL".to_string(),
        ),
    ];
    for (i, (url, expect)) in cases.iter().enumerate() {
        let config = dir.path().join(format!("relay-{i}.yaml"));
        let yaml = base_config_with_storage("storage:\n  postgres: \"${RELAY_DATABASE_URL}\"\n")
            .replace("{PORT}", &free_port().to_string());
        std::fs::write(&config, yaml).expect("write config");
        for command in ["check", "serve"] {
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
                .args([command, "--config"])
                .arg(&config)
                .env("RELAY_DATABASE_URL", url)
                .env("T_INGEST", INGEST)
                .env("T_ADMIN", ADMIN)
                .env("T_VIEWER", VIEWER)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run relay");
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().expect("wait").is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("relay {command} did not exit within 30 s with {url}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let out = child.wait_with_output().expect("output");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{command} accepted {url}: {stderr}");
            assert!(
                stderr.contains("storage.postgres") && stderr.contains(expect.as_str()),
                "{command}: the message names the setting and the fault ({expect}): {stderr}"
            );
            assert!(
                !stderr.contains("Sup3rSecretPw"),
                "{command} printed the password: {stderr}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_that_loses_its_database_retries_and_delivers_every_accepted_event() {
    // A cluster of its own: this test stops and starts it.
    let cluster = PgCluster::start(FAST);
    let url = cluster.fresh_db().await;
    let rx = Receiver::start().await;
    // A slow receiver: most of the first events are still pending (or in
    // flight) when the database goes away.
    for _ in 0..40 {
        rx.push(Reply {
            delay: Duration::from_millis(150),
            ..Reply::status(200)
        });
    }
    let relay = Relay::start_on(Some(&storage(&url)), &extra(&rx)).await;
    let first: Vec<Value> = (0..200)
        .map(|i| json!({"type": "scan", "id": format!("before-{i}")}))
        .collect();
    let (status, _) = relay
        .post("/api/v1/events", Some(INGEST), &Value::Array(first))
        .await;
    assert_eq!(status, 202);
    cluster.stop_server();
    let during_outage = rx.received().len();
    // While the database is down nothing is accepted (no 202 without a
    // commit).
    let (status, body) = relay
        .post(
            "/api/v1/events",
            Some(INGEST),
            &json!({"type": "scan", "id": "outage"}),
        )
        .await;
    assert!(
        status >= 500,
        "accepted without a database: {status} {body}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.start_server();
    let second: Vec<Value> = (0..100)
        .map(|i| json!({"type": "scan", "id": format!("after-{i}")}))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = relay
            .post(
                "/api/v1/events",
                Some(INGEST),
                &Value::Array(second.clone()),
            )
            .await;
        if status == 202 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ingest never recovered: {status}\n{}",
            relay.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let want: HashSet<String> = (0..200)
        .map(|i| format!("before-{i}"))
        .chain((0..100).map(|i| format!("after-{i}")))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got: HashSet<String> = rx
            .received()
            .iter()
            .filter_map(|r| r.json()["id"].as_str().map(str::to_owned))
            .collect();
        if want.is_subset(&got) {
            assert!(
                !got.contains("outage"),
                "an event refused during the outage went out"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted events delivered after the database came back\n{}",
            want.intersection(&got).count(),
            want.len(),
            relay.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        during_outage < 200,
        "the outage came too late to prove anything ({during_outage} delivered before it)"
    );
    let logs = relay.logs();
    assert!(
        logs.contains("dispatch pauses") || logs.contains("cannot"),
        "the relay said it lost the database: {logs}"
    );
}

/// The state and failure count of the only webhook, as `relay` serves it.
async fn webhook_state(relay: &Relay) -> (String, String, u64) {
    let (status, list) = relay
        .get("/api/v1/webhooks", Some(ADMIN))
        .await
        .expect("webhooks");
    assert_eq!(status, 200, "{list}");
    let w = list
        .as_array()
        .and_then(|a| a.first())
        .or_else(|| list["data"].as_array().and_then(|a| a.first()))
        .cloned()
        .unwrap_or_else(|| panic!("one webhook: {list}"));
    (
        w["id"].as_str().unwrap_or_default().to_owned(),
        w["state"].as_str().unwrap_or_default().to_owned(),
        w["failure_count"].as_u64().unwrap_or(u64::MAX),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn receiver_failures_seen_by_two_relays_add_up_and_pause_the_webhook_on_both() {
    let url = PgCluster::shared().fresh_db().await;
    let rx = Receiver::start().await;
    for _ in 0..4 {
        rx.push(Reply::status(500));
    }
    let extra = format!(
        "delivery:\n  breaker_threshold: 4\nwebhooks:\n  - name: Flaky\n    url: {}\n    retry_count: 0\n",
        rx.url("/flaky")
    );
    let a = Relay::start_on(Some(&storage(&url)), &extra).await;
    let b = Relay::start_on(Some(&storage(&url)), &extra).await;
    // Two failures through each relay: four in all, the threshold.
    for (relay, id) in [(&a, "f-1"), (&b, "f-2"), (&a, "f-3"), (&b, "f-4")] {
        let (s, _) = relay
            .post(
                "/api/v1/events",
                Some(INGEST),
                &json!({"type": "t", "id": id}),
            )
            .await;
        assert_eq!(s, 202);
        rx.wait_for(
            ["f-1", "f-2", "f-3", "f-4"]
                .iter()
                .position(|x| *x == id)
                .map_or(0, |i| i + 1),
            Duration::from_secs(10),
        )
        .await;
    }
    // Each relay saw two; the stored counter says four, and both relays
    // show the webhook paused (the other one reads it back within a second).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (sa, sb) = (webhook_state(&a).await, webhook_state(&b).await);
        if sa.1 == "paused" && sb.1 == "paused" {
            assert_eq!((sa.2, sb.2), (4, 4), "{sa:?} {sb:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not paused on both: {sa:?} {sb:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // While paused, neither relay sends: events wait.
    for (relay, id) in [(&a, "w-1"), (&b, "w-2")] {
        let (s, _) = relay
            .post(
                "/api/v1/events",
                Some(INGEST),
                &json!({"type": "t", "id": id}),
            )
            .await;
        assert_eq!(s, 202);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.received().len(), 4, "nothing sent while paused");
    // Re-enabled through one relay's API: the waiting events go out.
    let (id, _, _) = webhook_state(&b).await;
    let (s, body) = b
        .request_json(
            "PUT",
            &format!("/api/v1/webhooks/{id}"),
            ADMIN,
            &json!({"is_active": true}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let got = rx.wait_for(6, Duration::from_secs(15)).await;
    let ids: HashSet<String> = got[4..]
        .iter()
        .filter_map(|r| r.json()["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids, HashSet::from(["w-1".to_string(), "w-2".to_string()]));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.received().len(), 6, "each waiting event sent once");
}
