//! The PostgreSQL store alone, against a real cluster the test starts: the
//! lease protocol (claim, renew, record with the owner check, takeover of
//! an expired lease), idempotent ingest, the atomic breaker counter, the
//! migrations under their advisory lock, and the round-trip budget.

mod common;

use std::time::Duration;

use common::pg::PgCluster;
use relay::event::{Event, new_id, now_ms};
use relay::history::{Attempt, Status};
use relay::store::postgres::{BreakerChange, PgStore};
use relay::store::{Activity, Start, Target};

fn event(id: &str) -> Event {
    Event {
        id: id.into(),
        event_type: "t".into(),
        time: "2026-01-01T00:00:00Z".into(),
        data: serde_json::json!({"k": "v"}),
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
    PgStore::connect(url, lease_ms).await.expect("connect")
}

/// Inserts one event with `targets`, none leased.
async fn ingest(s: &PgStore, id: &str, targets: &[Target]) -> relay::store::Accepted {
    let e = event(id);
    let body = serde_json::to_string(&e).unwrap();
    let mut out = s
        .insert_events(&[(&e, body.as_str(), targets)], &[], &|_| false)
        .await
        .expect("insert");
    out.remove(0)
}

#[tokio::test]
async fn a_due_delivery_is_claimed_by_one_instance_only_until_its_lease_expires() {
    let url = PgCluster::shared().fresh_db().await;
    let (a, b) = (store(&url, 600).await, store(&url, 600).await);
    let t: Vec<Target> = (0..5).map(|_| target("w", Start::Due)).collect();
    ingest(&a, "e1", &t).await;
    // Both instances claim at once: every delivery goes to exactly one.
    let (ca, cb) = tokio::join!(a.claim_due("w", now_ms(), 3), b.claim_due("w", now_ms(), 10));
    let (ca, cb) = (ca.unwrap().0, cb.unwrap().0);
    let mut ids: Vec<String> = ca.iter().chain(&cb).map(|d| d.delivery_id.clone()).collect();
    ids.sort();
    let mut want: Vec<String> = t.iter().map(|t| t.delivery_id.clone()).collect();
    want.sort();
    assert_eq!(ids, want, "each delivery claimed once");
    assert!(ca.len() <= 3, "{} claimed over the limit", ca.len());
    // Leased: nothing left for anyone.
    assert!(b.claim_due("w", now_ms(), 10).await.unwrap().0.is_empty());
    // a dies without recording; its leases expire and b takes them over.
    drop(a);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let taken = b.claim_due("w", now_ms(), 10).await.unwrap().0;
    assert_eq!(taken.len(), ca.len(), "the expired leases are claimed again");
}

#[tokio::test]
async fn a_renewed_lease_is_not_taken_over() {
    let url = PgCluster::shared().fresh_db().await;
    let (a, b) = (store(&url, 400).await, store(&url, 400).await);
    let t = vec![target("w", Start::Due)];
    ingest(&a, "e1", &t).await;
    let claimed = a.claim_due("w", now_ms(), 10).await.unwrap().0;
    assert_eq!(claimed.len(), 1);
    let ids = vec![t[0].delivery_id.clone()];
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(a.renew(&ids).await.unwrap(), 1);
    }
    // 600 ms after the claim, more than the lease: still a's.
    assert!(b.claim_due("w", now_ms(), 10).await.unwrap().0.is_empty());
    assert_eq!(b.renew(&ids).await.unwrap(), 0, "b holds no lease on it");
}

#[tokio::test]
async fn recording_after_losing_the_lease_keeps_the_attempt_but_not_the_state() {
    let url = PgCluster::shared().fresh_db().await;
    let (a, b) = (store(&url, 300).await, store(&url, 60_000).await);
    let t = vec![target("w", Start::Due)];
    let id = t[0].delivery_id.clone();
    ingest(&a, "e1", &t).await;
    assert_eq!(a.claim_due("w", now_ms(), 10).await.unwrap().0.len(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(b.claim_due("w", now_ms(), 10).await.unwrap().0.len(), 1);
    // a's attempt ends late: its row is history, the delivery stays b's.
    let late = a
        .record(&attempt(&id, "w", 1, Status::Succeeded), None, true, BreakerChange::None)
        .await
        .unwrap();
    assert!(!late.owned);
    assert_eq!(a.get_delivery(&id).await.unwrap().unwrap().status, "pending");
    let done = b
        .record(&attempt(&id, "w", 1, Status::Succeeded), None, true, BreakerChange::None)
        .await
        .unwrap();
    assert!(done.owned);
    let d = b.get_delivery(&id).await.unwrap().unwrap();
    assert_eq!((d.status.as_str(), d.attempts), ("succeeded", 1));
    assert_eq!(b.list_for_delivery(&id).await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_event_id_is_stored_once_across_instances() {
    let url = PgCluster::shared().fresh_db().await;
    let (a, b) = (store(&url, 30_000).await, store(&url, 30_000).await);
    let (ta, tb) = (
        vec![target("w", Start::Due), target("v", Start::Skipped)],
        vec![target("w", Start::Due), target("v", Start::Skipped)],
    );
    let (ra, rb) = tokio::join!(ingest(&a, "same", &ta), ingest(&b, "same", &tb));
    let mut dup: Vec<bool> = vec![ra.duplicate, rb.duplicate];
    dup.sort();
    assert_eq!(dup, [false, true], "one instance stored it, the other saw a duplicate");
    assert_eq!((ra.deliveries, rb.deliveries), (2, 2));
    let (due, _) = a.claim_due("w", now_ms(), 10).await.unwrap();
    assert_eq!(due.len(), 1, "one delivery for the one stored event");
    assert!(a.claim_due("v", now_ms(), 10).await.unwrap().0.is_empty(), "skipped is not due");
    // The same id twice in one batch: the second is a duplicate.
    let e = event("twice");
    let body = serde_json::to_string(&e).unwrap();
    let t1 = vec![target("w", Start::Due)];
    let t2 = vec![target("w", Start::Due)];
    let out = a
        .insert_events(&[(&e, body.as_str(), &t1), (&e, body.as_str(), &t2)], &[], &|_| false)
        .await
        .unwrap();
    assert_eq!(
        out.iter().map(|x| (x.duplicate, x.deliveries)).collect::<Vec<_>>(),
        [(false, 1), (true, 1)]
    );
    assert_eq!(a.claim_due("w", now_ms(), 10).await.unwrap().0.len(), 1);
}

#[tokio::test]
async fn breaker_failures_from_several_instances_add_up_atomically() {
    let url = PgCluster::shared().fresh_db().await;
    let stores: Vec<PgStore> = futures_join(&url, 4).await;
    // 4 instances × 10 failures at once, threshold 30: the count is exact
    // and the webhook pauses at the 30th.
    let mut tasks = Vec::new();
    for s in &stores {
        for _ in 0..10 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.record(
                    &attempt(&new_id(), "w", 1, Status::Failed),
                    None,
                    false,
                    BreakerChange::Failure { threshold: 30 },
                )
                .await
                .unwrap()
                .breaker
                .unwrap()
            }));
        }
    }
    let mut counts = Vec::new();
    for t in tasks {
        counts.push(t.await.unwrap());
    }
    let mut n: Vec<u32> = counts.iter().map(|s| s.failure_count).collect();
    n.sort();
    assert_eq!(n, (1..=40).collect::<Vec<u32>>(), "every increment seen once");
    let paused = counts.iter().filter(|s| s.activity == Activity::Paused).count();
    assert_eq!(paused, 11, "paused from the 30th failure on");
    let states = stores[0].load_webhook_states().await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!((states[0].1.failure_count, states[0].1.activity), (40, Activity::Paused));
    // A success ends the streak (the pause stands until re-enabled).
    let ok = stores[1]
        .record(&attempt(&new_id(), "w", 1, Status::Succeeded), None, false, BreakerChange::Success)
        .await
        .unwrap();
    assert_eq!(ok.breaker.map(|s| s.failure_count), Some(0));
}

async fn futures_join(url: &str, n: usize) -> Vec<PgStore> {
    let mut out = Vec::new();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = url.to_owned();
            tokio::spawn(async move { PgStore::connect(&url, 30_000).await })
        })
        .collect();
    for t in tasks {
        out.push(t.await.unwrap().expect("connect; concurrent migrations wait for the lock"));
    }
    out
}

#[tokio::test]
async fn instances_starting_together_migrate_once() {
    let url = PgCluster::shared().fresh_db().await;
    let stores = futures_join(&url, 5).await;
    assert_eq!(stores.len(), 5);
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let rows = client
        .query("SELECT version FROM relay_migrations ORDER BY version", &[])
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    let want: Vec<i32> = relay::store::postgres::MIGRATIONS.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, want);
}

#[tokio::test]
async fn a_delivery_costs_at_most_two_round_trips_on_the_happy_path() {
    let url = PgCluster::shared().fresh_db().await;
    let s = store(&url, 30_000).await;
    // Warm the statement cache on the pool's connections.
    for i in 0..20 {
        let t = vec![target("w", Start::Due)];
        let id = t[0].delivery_id.clone();
        let e = event(&format!("warm{i}"));
        let body = serde_json::to_string(&e).unwrap();
        s.insert_events(&[(&e, body.as_str(), &t)], &[], &|_| true).await.unwrap();
        s.record(&attempt(&id, "w", 1, Status::Succeeded), None, true, BreakerChange::Success)
            .await
            .unwrap();
    }
    let before = s.round_trips();
    const N: u64 = 200;
    for i in 0..N {
        // Ingest leases the delivery to this instance (its lane holds it),
        // so the attempt needs no claim: ingest + record.
        let t = vec![target("w", Start::Due)];
        let id = t[0].delivery_id.clone();
        let e = event(&format!("e{i}"));
        let body = serde_json::to_string(&e).unwrap();
        s.insert_events(&[(&e, body.as_str(), &t)], &[], &|_| true).await.unwrap();
        let r = s
            .record(&attempt(&id, "w", 1, Status::Succeeded), None, true, BreakerChange::Success)
            .await
            .unwrap();
        assert!(r.owned);
    }
    let per_delivery = (s.round_trips() - before) as f64 / N as f64;
    eprintln!("round trips per delivery: {per_delivery:.2}");
    assert!(per_delivery <= 2.0, "{per_delivery} round trips per delivery");
}
