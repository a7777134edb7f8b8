//! The PostgreSQL store alone, against a real cluster the test starts: the
//! lease protocol (claim, renew, record with the owner check, takeover of
//! an expired lease), idempotent ingest, the atomic breaker counter, the
//! migrations under their advisory lock, and the round-trip budget.

mod common;

use std::time::Duration;

use common::pg::PgCluster;
use relay::event::{Event, new_id, now_ms};
use relay::store::postgres::PgStore;
use relay::store::{
    Activity, Attempt, AttemptRecord, BreakerChange, Busy, NewEvent, Start, Status, Storage, Target,
};

fn event(id: &str) -> Event {
    Event {
        id: id.into(),
        event_type: "t".into(),
        time: "2026-01-01T00:00:00Z".into(),
        data: serde_json::json!({"k": "v"}).into(),
    }
}

fn target(webhook: &str, start: Start) -> Target {
    Target {
        delivery_id: new_id(),
        webhook_id: webhook.into(),
        start,
    }
}

fn attempt(delivery: &str, webhook: &str, number: u32, status: Status) -> Attempt {
    let now = now_ms();
    Attempt {
        id: new_id(),
        delivery_id: delivery.into(),
        webhook_id: webhook.into(),
        event_id: "e".into(),
        event_type: "t".into(),
        attempt: number,
        status,
        status_code: Some(200),
        success: status == Status::Succeeded,
        error: None,
        response_body: Some("ok".into()),
        duration_ms: 3,
        warnings: vec![],
        created_at: relay::event::rfc3339_ms(now),
        created_at_ms: now,
    }
}

async fn store(url: &str, lease_ms: u64) -> PgStore {
    PgStore::connect(url, Duration::from_millis(lease_ms))
        .await
        .expect("connect")
}

fn new_event(id: &str, targets: &[Target]) -> NewEvent {
    let event = event(id);
    NewEvent {
        digests: vec![],
        dedup: None,
        body: serde_json::to_string(&event).unwrap(),
        event,
        targets: targets.to_vec(),
        held: vec![],
        decisions: vec![],
    }
}

/// Accepts one event with `targets` (its due deliveries leased to `s`).
async fn ingest(s: &PgStore, id: &str, targets: &[Target]) -> relay::store::Accepted {
    let (mut out, _) = s
        .accept(vec![new_event(id, targets)])
        .await
        .expect("accept");
    out.remove(0)
}

/// Gives up `s`'s leases on `targets` (as a full lane does).
async fn release(s: &PgStore, targets: &[Target]) {
    let ids = targets.iter().map(|t| t.delivery_id.clone()).collect();
    s.renew(ids, Duration::ZERO).await.expect("release");
}

async fn claim(s: &PgStore, limit: usize) -> Vec<String> {
    let c = s
        .claim_due("w", limit, s.lease(), Busy::none())
        .await
        .expect("claim");
    c.due.into_iter().map(|d| d.delivery_id).collect()
}

async fn record(
    s: &PgStore,
    delivery: &str,
    breaker: BreakerChange,
) -> Option<relay::store::WebhookState> {
    s.record_attempt(AttemptRecord {
        catch_all: None,
        attempt: attempt(delivery, "w", 1, Status::Succeeded),
        due_at: None,
        breaker,
        destination_state: None,
    })
    .await
    .expect("record")
}

/// A plain connection to the test's database, beside the store's own
/// (to look at rows and statistics).
async fn observer(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::test]
async fn accepted_deliveries_are_leased_to_the_accepting_instance() {
    let url = PgCluster::shared().fresh_db().await;
    let (a, b) = (store(&url, 60_000).await, store(&url, 60_000).await);
    let t: Vec<Target> = (0..3).map(|_| target("w", Start::Due)).collect();
    ingest(&a, "e1", &t).await;
    // a's lanes hold them: neither instance's poller may claim them.
    assert!(claim(&b, 10).await.is_empty());
    assert!(claim(&a, 10).await.is_empty());
    // A full lane gives one up: now any instance can claim it.
    release(&a, &t[..1]).await;
    assert_eq!(claim(&b, 10).await, vec![t[0].delivery_id.clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_delivery_is_claimed_by_one_instance_only_until_its_lease_expires() {
    let url = PgCluster::shared().fresh_db().await;
    // a's leases are short, b's long.
    let (a, b) = (store(&url, 600).await, store(&url, 60_000).await);
    let t: Vec<Target> = (0..50).map(|_| target("w", Start::Due)).collect();
    ingest(&a, "e1", &t).await;
    release(&a, &t).await;
    // Both instances claim at once: no delivery goes to both.
    let (ca, cb) = tokio::join!(claim(&a, 30), claim(&b, 30));
    assert!(
        ca.len() <= 30 && cb.len() <= 30,
        "{} and {}",
        ca.len(),
        cb.len()
    );
    let mut ids: Vec<String> = ca.iter().chain(&cb).cloned().collect();
    ids.sort();
    let mut want: Vec<String> = t.iter().map(|t| t.delivery_id.clone()).collect();
    want.sort();
    assert_eq!(ids, want, "each delivery claimed once");
    assert!(!ca.is_empty(), "a claimed some");
    // Leased: nothing left for anyone.
    assert!(claim(&b, 100).await.is_empty());
    // a dies without recording; its leases expire and b takes them over.
    drop(a);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut taken = claim(&b, 100).await;
    taken.sort();
    let mut lost = ca.clone();
    lost.sort();
    assert_eq!(taken, lost, "exactly the expired leases are claimed again");
}

#[tokio::test]
async fn a_renewed_lease_is_not_taken_over() {
    let url = PgCluster::shared().fresh_db().await;
    let (a, b) = (store(&url, 400).await, store(&url, 400).await);
    let t = vec![target("w", Start::Due)];
    ingest(&a, "e1", &t).await;
    let ids = vec![t[0].delivery_id.clone()];
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        a.renew(ids.clone(), a.lease()).await.unwrap();
    }
    // 600 ms after ingest, more than the lease: still a's.
    assert!(claim(&b, 10).await.is_empty());
    // b's renewal of a lease it does not hold changes nothing.
    b.renew(ids.clone(), Duration::from_secs(3600))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(claim(&b, 10).await, ids, "a stopped renewing: b takes it");
}

#[tokio::test]
async fn recording_after_losing_the_lease_keeps_the_attempt_but_not_the_state() {
    let url = PgCluster::shared().fresh_db().await;
    let (a, b) = (store(&url, 300).await, store(&url, 60_000).await);
    let t = vec![target("w", Start::Due)];
    let id = t[0].delivery_id.clone();
    ingest(&a, "e1", &t).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(claim(&b, 10).await, vec![id.clone()]);
    // a's attempt ends late: its row is history, the delivery stays b's.
    record(&a, &id, BreakerChange::None).await;
    let d = a.get_delivery(&id).await.unwrap().unwrap();
    assert_eq!((d.status.as_str(), d.attempts), ("pending", 0));
    record(&b, &id, BreakerChange::None).await;
    let d = b.get_delivery(&id).await.unwrap().unwrap();
    assert_eq!((d.status.as_str(), d.attempts), ("succeeded", 1));
    assert_eq!(b.delivery_attempts(&id).await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_event_id_is_stored_once_across_instances() {
    let url = PgCluster::shared().fresh_db().await;
    let (a, b) = (store(&url, 60_000).await, store(&url, 60_000).await);
    let (ta, tb) = (
        vec![target("w", Start::Due), target("v", Start::Skipped)],
        vec![target("w", Start::Due), target("v", Start::Skipped)],
    );
    let (ra, rb) = tokio::join!(ingest(&a, "same", &ta), ingest(&b, "same", &tb));
    let mut dup: Vec<bool> = vec![ra.duplicate, rb.duplicate];
    dup.sort();
    assert_eq!(
        dup,
        [false, true],
        "one instance stored it, the other saw a duplicate"
    );
    assert_eq!((ra.deliveries, rb.deliveries), (2, 2));
    let depth = a.queue_depth(relay::event::now_ms() + 1).await.unwrap();
    assert_eq!(depth.len(), 1, "{depth:?}");
    assert_eq!((depth[0].webhook_id.as_str(), depth[0].pending), ("w", 1));
    // The same id twice in one batch: the second is a duplicate.
    let t1 = vec![target("w", Start::Due)];
    let t2 = vec![target("w", Start::Due)];
    let (out, _) = a
        .accept(vec![new_event("twice", &t1), new_event("twice", &t2)])
        .await
        .unwrap();
    assert_eq!(
        out.iter()
            .map(|x| (x.duplicate, x.deliveries))
            .collect::<Vec<_>>(),
        [(false, 1), (true, 1)]
    );
    let depth = a.queue_depth(relay::event::now_ms() + 1).await.unwrap();
    assert_eq!(depth[0].pending, 2);
}

async fn connect_many(url: &str, n: usize) -> Vec<PgStore> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = url.to_owned();
            tokio::spawn(async move { PgStore::connect(&url, Duration::from_secs(60)).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(
            t.await
                .unwrap()
                .expect("connect; concurrent migrations wait for the lock"),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_failures_from_several_instances_add_up_atomically() {
    let url = PgCluster::shared().fresh_db().await;
    let stores = connect_many(&url, 4).await;
    // 4 instances × 10 failures at once, threshold 30: every increment is
    // seen once and the webhook pauses at the 30th.
    let mut tasks = Vec::new();
    for s in &stores {
        for _ in 0..10 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                record(&s, &new_id(), BreakerChange::Failure { threshold: 30 })
                    .await
                    .expect("a failure writes the state")
            }));
        }
    }
    let mut states = Vec::new();
    for t in tasks {
        states.push(t.await.unwrap());
    }
    let mut n: Vec<u32> = states.iter().map(|s| s.failure_count).collect();
    n.sort();
    assert_eq!(n, (1..=40).collect::<Vec<u32>>());
    let paused = states
        .iter()
        .filter(|s| s.activity == Activity::Paused)
        .count();
    assert_eq!(paused, 11, "paused from the 30th failure on");
    let stored = stores[0].load_webhook_states().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].1.failure_count, stored[0].1.activity),
        (40, Activity::Paused)
    );
    // A success ends the streak (the pause stands until re-enabled).
    let ok = record(
        &stores[1],
        &new_id(),
        BreakerChange::Success { streak: false },
    )
    .await;
    assert_eq!(
        ok.map(|s| (s.failure_count, s.activity)),
        Some((0, Activity::Paused))
    );
}

#[tokio::test]
async fn instances_starting_together_migrate_once() {
    let url = PgCluster::shared().fresh_db().await;
    let stores = connect_many(&url, 5).await;
    assert_eq!(stores.len(), 5);
    let client = observer(&url).await;
    let rows = client
        .query("SELECT version FROM relay_migrations ORDER BY version", &[])
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    let want: Vec<i32> = relay::store::postgres::MIGRATIONS
        .iter()
        .map(|(v, _)| *v)
        .collect();
    assert_eq!(versions, want);
}

/// A database migrated before a `digested` decision became its digest
/// membership (migration 9): its decision rows move onto the memberships,
/// so the explanation and the listing say what they said.
#[tokio::test]
async fn migration_9_turns_digested_decision_rows_into_memberships() {
    let url = PgCluster::shared().fresh_db().await;
    let client = observer(&url).await;
    client
        .batch_execute(
            "CREATE TABLE relay_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL);",
        )
        .await
        .unwrap();
    for (version, sql) in relay::store::postgres::MIGRATIONS
        .iter()
        .filter(|(v, _)| *v <= 7)
    {
        client.batch_execute(sql).await.unwrap();
        client
            .execute("INSERT INTO relay_migrations VALUES ($1, 0)", &[version])
            .await
            .unwrap();
    }
    client
        .batch_execute(
            "INSERT INTO events (id, type, body, deliveries, received_at)
                 VALUES ('e1', 't', '{}', 0, 1000), ('e2', 't', '{}', 0, 2000);
             INSERT INTO digests (id, webhook_id, grp, state, count, max_events, opened_at, closes_at)
                 VALUES ('d1', 'w', '{}', 'open', 2, 100, 1000, 61000);
             INSERT INTO digest_members (digest_id, seq, event_id) VALUES ('d1', 1, 'e1'), ('d1', 2, 'e2');
             INSERT INTO decisions (event_id, webhook_id, webhook_name, decision, rule, ref, created_at) VALUES
                 ('e1', 'w', 'Weekly', 'digested', 'digest', 'd1', 1000),
                 ('e1', 'x', 'Other', 'filtered', 'filter.tenant', NULL, 1000),
                 ('e2', 'w', 'Weekly', 'digested', 'digest', 'd1', 2000);",
        )
        .await
        .unwrap();
    let s = store(&url, 60_000).await;
    let rows: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM decisions WHERE decision = 'digested'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "the rows became memberships");
    let e1 = s.event_decisions("e1").await.unwrap();
    let seen: Vec<(&str, Option<&str>, Option<&str>, i64)> = e1
        .iter()
        .map(|d| {
            (
                d.decision.as_str(),
                d.webhook_name.as_deref(),
                d.reference.as_deref(),
                d.created_at_ms,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("filtered", Some("Other"), None, 1000),
            ("digested", Some("Weekly"), Some("d1"), 1000)
        ]
    );
    let page = s
        .list_decisions(relay::store::DecisionQuery {
            decision: Some("digested".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let listed: Vec<(&str, i64)> = page
        .data
        .iter()
        .map(|d| (d.record.event_id.as_str(), d.record.created_at_ms))
        .collect();
    assert_eq!(listed, [("e2", 2000), ("e1", 1000)]);
    assert!(page.next.is_none());
}

#[tokio::test]
async fn a_delivery_costs_at_most_two_round_trips_on_the_happy_path() {
    let url = PgCluster::shared().fresh_db().await;
    let s = store(&url, 60_000).await;
    // Ingest leases the delivery to this instance (its lane holds it), so
    // the attempt needs no claim: accept + record.
    let deliver = |i: usize| {
        let s = s.clone();
        async move {
            let t = vec![target("w", Start::Due)];
            ingest(&s, &format!("e{i}"), &t).await;
            record(
                &s,
                &t[0].delivery_id,
                BreakerChange::Success { streak: false },
            )
            .await;
            let d = s.get_delivery(&t[0].delivery_id).await.unwrap().unwrap();
            assert_eq!(d.status, "succeeded");
        }
    };
    // Warm the statement cache of the pool's connections.
    for i in 0..40 {
        deliver(i).await;
    }
    let before = s.round_trips();
    const N: usize = 200;
    for i in 100..100 + N {
        deliver(i).await;
    }
    // Each delivery above also read its row back once (get_delivery).
    let per_delivery = (s.round_trips() - before) as f64 / N as f64 - 1.0;
    eprintln!("round trips per delivery: {per_delivery:.2}");
    assert!(
        per_delivery <= 2.0,
        "{per_delivery} round trips per delivery"
    );
    assert!(
        per_delivery >= 2.0,
        "ingest and record are one statement each: {per_delivery}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_delivery_wakes_the_other_instances_through_notify() {
    let url = PgCluster::shared().fresh_db().await;
    let (a, b) = (store(&url, 60_000).await, store(&url, 60_000).await);
    let woken = std::sync::Arc::new(tokio::sync::Notify::new());
    b.on_new_work(woken.clone());
    // The listener wakes once when it has subscribed (a notification may
    // have been missed before): wait for that one first.
    tokio::time::timeout(Duration::from_secs(10), woken.notified())
        .await
        .expect("the LISTEN connection is up");
    let t = vec![target("w", Start::Due)];
    ingest(&a, "e1", &t).await;
    // Leased to a at ingest: nobody is woken.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), woken.notified())
            .await
            .is_err(),
        "ingest of a's own work woke b"
    );
    release(&a, &t).await;
    tokio::time::timeout(Duration::from_secs(5), woken.notified())
        .await
        .expect("b was notified of the released delivery");
    assert_eq!(claim(&b, 10).await, vec![t[0].delivery_id.clone()]);
}

#[tokio::test]
async fn retention_deletes_old_history_in_steps_but_never_pending_work() {
    let url = PgCluster::shared().fresh_db().await;
    let s = store(&url, 60_000).await;
    // 2,500 old events delivered (more than one step of each table), and
    // one old event still pending.
    for chunk in 0..5 {
        let batch: Vec<NewEvent> = (0..500)
            .map(|i| new_event(&format!("old-{chunk}-{i}"), &[target("w", Start::Due)]))
            .collect();
        let (accepted, batch) = s.accept(batch).await.unwrap();
        assert!(accepted.iter().all(|a| !a.duplicate));
        for e in &batch {
            record(&s, &e.targets[0].delivery_id, BreakerChange::None).await;
        }
    }
    let pending = vec![target("w", Start::Due)];
    ingest(&s, "pending", &pending).await;
    let client = observer(&url).await;
    let old = now_ms() - 40 * 86_400_000;
    client
        .batch_execute(&format!(
            "UPDATE attempts SET created_at = {old}; UPDATE deliveries SET updated_at = {old};
             UPDATE events SET received_at = {old};"
        ))
        .await
        .unwrap();
    // Then 10 recent events delivered: retention stops at the first
    // attempt and event not older than the cutoff.
    for i in 0..10 {
        let t = vec![target("w", Start::Due)];
        ingest(&s, &format!("recent-{i}"), &t).await;
        record(&s, &t[0].delivery_id, BreakerChange::None).await;
    }
    let deleted = s.prune(now_ms() - 30 * 86_400_000).await.unwrap();
    assert_eq!(deleted, 3 * 2_500, "2,500 attempts, deliveries and events");
    let count = |table: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(
        (
            count("attempts").await,
            count("deliveries").await,
            count("events").await
        ),
        (10, 11, 11),
        "the recent history, the pending delivery and its event stay"
    );
    assert_eq!(s.prune(now_ms() - 30 * 86_400_000).await.unwrap(), 0);
}

/// Ingests and records `n` deliveries from `n` tasks at once (each: accept
/// one event, then record its attempt); returns their delivery ids.
async fn deliver_at_once(s: &PgStore, n: usize, prefix: &str) -> Vec<String> {
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (s, start) = (s.clone(), start.clone());
            let id = format!("{prefix}{i}");
            tokio::spawn(async move {
                let t = vec![target("w", Start::Due)];
                start.wait().await;
                assert!(!ingest(&s, &id, &t).await.duplicate);
                record(
                    &s,
                    &t[0].delivery_id,
                    BreakerChange::Success { streak: false },
                )
                .await;
                t[0].delivery_id.clone()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("delivery task"));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_share_round_trips_and_each_is_recorded_once() {
    let url = PgCluster::shared().fresh_db().await;
    let s = store(&url, 60_000).await;
    // Warm the statement cache of the pool's connections.
    deliver_at_once(&s, 32, "warm-").await;
    let before = s.round_trips();
    const N: usize = 200;
    let ids = deliver_at_once(&s, N, "e").await;
    let trips = s.round_trips() - before;
    eprintln!("{trips} round trips for {N} concurrent deliveries");
    // Alone, a delivery costs two (accept, record); written while others
    // are in flight, accepts and records go out in groups.
    assert!(
        trips < N as u64,
        "{trips} round trips for {N} deliveries: not grouped"
    );
    let client = observer(&url).await;
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'succeeded' AND owner IS NULL AND due_at IS NULL),
                    (SELECT count(*) FROM attempts WHERE delivery_id = ANY($1)),
                    (SELECT count(DISTINCT delivery_id) FROM attempts WHERE delivery_id = ANY($1))
             FROM deliveries WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (N as i64, N as i64, N as i64),
        "every delivery succeeded with exactly one attempt row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_posted_twice_at_once_is_new_once() {
    let url = PgCluster::shared().fresh_db().await;
    let s = store(&url, 60_000).await;
    const N: usize = 40;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(N));
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (s, start) = (s.clone(), start.clone());
            tokio::spawn(async move {
                // Ten ids, each posted by four tasks, with 1 to 4 targets.
                let targets: Vec<Target> = (0..=i / 10).map(|_| target("w", Start::Due)).collect();
                start.wait().await;
                ingest(&s, &format!("same-{}", i % 10), &targets).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("ingest task"));
    }
    for id in 0..10 {
        let of_id: Vec<_> = answers
            .iter()
            .filter(|a| a.id == format!("same-{id}"))
            .collect();
        assert_eq!(of_id.len(), 4);
        let new: Vec<_> = of_id.iter().filter(|a| !a.duplicate).collect();
        assert_eq!(new.len(), 1, "same-{id} is new exactly once");
        assert!(
            of_id.iter().all(|a| a.deliveries == new[0].deliveries),
            "duplicates answer the first acceptance's count"
        );
    }
    let client = observer(&url).await;
    let stored: i64 = client
        .query_one(
            "SELECT count(*) FROM deliveries d JOIN events e ON e.id = d.event_id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let promised: u32 = answers
        .iter()
        .filter(|a| !a.duplicate)
        .map(|a| a.deliveries)
        .sum();
    assert_eq!(
        stored, promised as i64,
        "deliveries of the first acceptances only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_database_refuses_fails_alone_among_concurrent_ones() {
    let url = PgCluster::shared().fresh_db().await;
    let s = store(&url, 60_000).await;
    const N: usize = 30;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(N));
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (s, start) = (s.clone(), start.clone());
            tokio::spawn(async move {
                let mut e = new_event(&format!("e{i}"), &[target("w", Start::Due)]);
                if i == 7 {
                    // Postgres text cannot hold NUL: this batch is refused.
                    e.body.push('\0');
                }
                start.wait().await;
                s.accept(vec![e]).await.map(|(a, _)| a[0].id.clone())
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("ingest task"));
    }
    let failed: Vec<usize> = (0..N).filter(|i| results[*i].is_err()).collect();
    assert_eq!(failed, vec![7], "only the refused batch fails");
    let client = observer(&url).await;
    let stored: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, N as i64 - 1);
}

#[tokio::test]
async fn a_response_body_with_a_nul_character_is_recorded_with_a_replacement() {
    let url = PgCluster::shared().fresh_db().await;
    let s = store(&url, 60_000).await;
    // One record of the happy path (grouped) and one failure (alone).
    for (breaker, status) in [
        (BreakerChange::Success { streak: false }, Status::Succeeded),
        (BreakerChange::Failure { threshold: 5 }, Status::Failed),
    ] {
        let t = vec![target("w", Start::Due)];
        ingest(&s, &new_id(), &t).await;
        let mut a = attempt(&t[0].delivery_id, "w", 1, status);
        a.response_body = Some("before\0after".into());
        a.error = (status == Status::Failed).then(|| relay::store::AttemptError {
            kind: "http_status".into(),
            origin: "upstream".into(),
            message: "HTTP 500: \0".into(),
            retryable: false,
        });
        s.record_attempt(AttemptRecord {
            attempt: a,
            due_at: None,
            breaker,
            catch_all: None,
            destination_state: None,
        })
        .await
        .expect("a NUL in the receiver's answer does not stop the record");
        let d = s.get_delivery(&t[0].delivery_id).await.unwrap().unwrap();
        assert_eq!(d.status, status.as_str());
        let history = s.delivery_attempts(&t[0].delivery_id).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(
            history[0].response_body.as_deref(),
            Some("before\u{FFFD}after")
        );
        if let Some(e) = &history[0].error {
            assert_eq!(e.message, "HTTP 500: \u{FFFD}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepts_written_together_keep_each_events_decisions() {
    let url = PgCluster::shared().fresh_db().await;
    let s = store(&url, 60_000).await;
    const N: usize = 60;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(N));
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (s, start) = (s.clone(), start.clone());
            tokio::spawn(async move {
                let targets = vec![target("w", Start::Due)];
                let mut e = new_event(&format!("e{i}"), &targets);
                // Event i has i % 3 + 1 decisions: one delivered, the
                // others filtered.
                e.decisions = (0..=i % 3)
                    .map(|k| relay::store::DecisionRecord {
                        event_id: e.event.id.clone(),
                        webhook_id: Some(format!("w{k}")),
                        webhook_name: None,
                        decision: if k == 0 { "delivered" } else { "filtered" }.into(),
                        rule: None,
                        reference: None,
                        created_at_ms: now_ms(),
                    })
                    .collect();
                start.wait().await;
                s.accept(vec![e]).await.expect("accept").0.remove(0)
            })
        })
        .collect();
    for t in tasks {
        assert!(!t.await.expect("accept task").duplicate);
    }
    for i in 0..N {
        let d = s.event_decisions(&format!("e{i}")).await.unwrap();
        assert_eq!(d.len(), i % 3 + 1, "decisions of e{i}");
        assert_eq!(
            d.iter().filter(|d| d.decision == "delivered").count(),
            1,
            "e{i}"
        );
    }
    // Posted again: a duplicate adds no decision.
    ingest(&s, "e0", &[target("w", Start::Due)]).await;
    assert_eq!(s.event_decisions("e0").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_failure_that_leaves_the_breaker_alone_still_makes_the_catch_all() {
    let url = PgCluster::shared().fresh_db().await;
    let s = store(&url, 60_000).await;
    let t = vec![target("w", Start::Due)];
    ingest(&s, "e", &t).await;
    let catch_all = target("everything-else", Start::Due);
    // A failure the event's data caused (a plugin refused it): the
    // breaker does not move, the catch-all must still be considered.
    s.record_attempt(AttemptRecord {
        attempt: attempt(&t[0].delivery_id, "w", 1, Status::Failed),
        due_at: None,
        breaker: BreakerChange::None,
        catch_all: Some(catch_all.clone()),
        destination_state: None,
    })
    .await
    .expect("record");
    let d = s
        .get_delivery(&catch_all.delivery_id)
        .await
        .unwrap()
        .expect("the catch-all delivery exists");
    assert_eq!((d.event_id.as_str(), d.status.as_str()), ("e", "pending"));
    let decisions = s.event_decisions("e").await.unwrap();
    assert_eq!(
        decisions
            .iter()
            .filter(|d| d.decision == "catch_all")
            .count(),
        1
    );
}

/// `deliveries`' counters in `pg_stat_user_tables` once they show
/// `inserted` inserts and `updated` updates (each backend reports its
/// counts when it goes idle, within about a second; bounded wait):
/// (sequential scans, rows those scans read).
async fn delivery_scans(
    client: &tokio_postgres::Client,
    inserted: i64,
    updated: i64,
) -> (i64, i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = client
            .query_one(
                "SELECT n_tup_ins, n_tup_upd, seq_scan, seq_tup_read FROM pg_stat_user_tables WHERE relname = 'deliveries'",
                &[],
            )
            .await
            .unwrap();
        let (ins, upd): (i64, i64) = (r.get(0), r.get(1));
        if (ins, upd) == (inserted, updated) {
            return (r.get(2), r.get(3));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the statistics show {ins} inserts and {upd} updates, waiting for {inserted} and {updated}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_record_finds_its_delivery_by_key_though_its_plan_was_made_on_a_nearly_empty_table() {
    let url = PgCluster::shared().fresh_db().await;
    let s = store(&url, 60_000).await;
    let client = observer(&url).await;
    // The record connection makes its one plan on its first record, while
    // `deliveries` holds three rows and has no statistics.
    for i in 0..3 {
        let t = vec![target("w", Start::Due)];
        ingest(&s, &format!("first-{i}"), &t).await;
        record(&s, &t[0].delivery_id, BreakerChange::None).await;
    }
    let mut later = Vec::new();
    for chunk in 0..4 {
        let batch: Vec<NewEvent> = (0..500)
            .map(|i| new_event(&format!("later-{chunk}-{i}"), &[target("w", Start::Due)]))
            .collect();
        let (_, batch) = s.accept(batch).await.unwrap();
        later.extend(batch.into_iter().map(|e| e.targets[0].delivery_id.clone()));
    }
    let (scans, read) = delivery_scans(&client, 2_003, 3).await;
    // Counts are reported at the end of a transaction at most once a second
    // per backend (else after up to 10 s idle): let a second pass.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    const N: usize = 100;
    for id in &later[..N] {
        record(&s, id, BreakerChange::None).await;
    }
    let (scans_after, read_after) = delivery_scans(&client, 2_003, 3 + N as i64).await;
    assert_eq!(
        (scans_after - scans, read_after - read),
        (0, 0),
        "{N} records of a 2,003-row table scanned it"
    );
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'pending') FROM deliveries",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (3 + N as i64, 2_000 - N as i64)
    );
}

#[tokio::test]
async fn due_webhooks_names_each_webhook_with_due_work_once_without_reading_the_table() {
    let url = PgCluster::shared().fresh_db().await;
    let s = store(&url, 60_000).await;
    let client = observer(&url).await;
    // "due": two due deliveries; "held": one paused (due, waiting for its
    // webhook); "later": a retry an hour from now; "done": succeeded.
    let targets = [
        target("due", Start::Due),
        target("due", Start::Due),
        target("held", Start::Paused),
        target("later", Start::Due),
        target("done", Start::Due),
    ];
    ingest(&s, "e1", &targets).await;
    let later = AttemptRecord {
        catch_all: None,
        attempt: attempt(&targets[3].delivery_id, "later", 1, Status::Retrying),
        due_at: Some(now_ms() + 3_600_000),
        breaker: BreakerChange::None,
        destination_state: None,
    };
    s.record_attempt(later).await.expect("record the retry");
    record(&s, &targets[4].delivery_id, BreakerChange::None).await;
    let (scans, read) = delivery_scans(&client, 5, 2).await;
    let idx_before: i64 = client
        .query_one(
            "SELECT idx_scan FROM pg_stat_user_tables WHERE relname = 'deliveries'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // A backend reports its counts at the end of a transaction at most once
    // a second (else after up to 10 s idle): let a second pass.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let mut due = s.due_webhooks(now_ms()).await.expect("due webhooks");
    due.sort();
    assert_eq!(due, vec!["due".to_owned(), "held".to_owned()]);
    let mut all = s
        .due_webhooks(now_ms() + 7_200_000)
        .await
        .expect("due webhooks in two hours");
    all.sort();
    assert_eq!(
        all,
        vec!["due".to_owned(), "held".to_owned(), "later".to_owned()]
    );
    // Each read above scanned the table or its index at least once; wait
    // (bounded) until the reader has reported them.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (scans_after, read_after) = loop {
        let r = client
            .query_one(
                "SELECT seq_scan, seq_tup_read, idx_scan FROM pg_stat_user_tables WHERE relname = 'deliveries'",
                &[],
            )
            .await
            .unwrap();
        let (seq, read_now, idx): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
        if seq + idx >= scans + idx_before + 2 {
            break (seq, read_now);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reads were never reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (scans_after, read_after),
        (scans, read),
        "due_webhooks scanned deliveries"
    );
}
