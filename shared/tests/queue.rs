//! The Redis Streams queue against a real Redis: dedupe, instant pickup, ack deletes, orphan
//! claim with delivery counts, poison detection, delayed retries promoted in chunks, recovery
//! after the queue's keys vanish (a Redis restart without persistence).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tradefleet::queue::{Envelope, QueueSettings, StreamQueue};

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A queue under a key prefix of its own; its keys are deleted when the test ends.
struct TestQueue {
    queue: StreamQueue,
    prefix: String,
}

impl TestQueue {
    async fn new(settings: QueueSettings) -> Self {
        let prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
        let queue = StreamQueue::connect(&redis_url(), &prefix, "jobs", settings)
            .await
            .expect("Redis must be reachable on TEST_REDIS_URL or 127.0.0.1:6379");
        Self { queue, prefix }
    }

    async fn wipe(&self) {
        let client = redis::Client::open(redis_url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query_async(&mut c)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut c)
                .await
                .unwrap();
        }
    }
}

fn env(id: &str) -> Envelope {
    Envelope {
        id: id.into(),
        attempt: 1,
        payload: format!("{{\"job\":\"{id}\"}}"),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn fast() -> QueueSettings {
    QueueSettings {
        block_ms: 200,
        orphan_idle_ms: 300,
        ..QueueSettings::default()
    }
}

#[tokio::test]
async fn enqueue_is_deduplicated_by_job_id() {
    let t = TestQueue::new(fast()).await;
    assert!(t.queue.enqueue(&env("a")).await.unwrap());
    assert!(
        !t.queue.enqueue(&env("a")).await.unwrap(),
        "second enqueue of the same id"
    );
    let batch: Vec<_> = ["a", "b", "c", "b"].iter().map(|i| env(i)).collect();
    assert_eq!(
        t.queue.enqueue_many(&batch).await.unwrap(),
        2,
        "only b and c are new"
    );
    assert_eq!(t.queue.depth().await.unwrap().waiting, 3);
    t.wipe().await;
}

#[tokio::test]
async fn ack_removes_finished_entries_from_redis() {
    let t = TestQueue::new(fast()).await;
    t.queue.enqueue_many(&[env("a"), env("b")]).await.unwrap();
    let mut c = t.queue.consumer("w1").await.unwrap();
    let got = c.fetch(10).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].envelope, env("a"));
    assert_eq!(got[0].deliveries, 1);
    let d = t.queue.depth().await.unwrap();
    assert_eq!((d.waiting, d.in_flight), (0, 2));
    for g in &got {
        t.queue.ack(g).await.unwrap();
    }
    let d = t.queue.depth().await.unwrap();
    assert_eq!((d.waiting, d.in_flight, d.delayed, d.dead), (0, 0, 0, 0));
    t.wipe().await;
}

#[tokio::test]
async fn a_blocked_consumer_wakes_on_a_new_job() {
    let t = TestQueue::new(QueueSettings {
        block_ms: 10_000,
        ..fast()
    })
    .await;
    let mut c = t.queue.consumer("idle").await.unwrap();
    let reader = tokio::spawn(async move { c.fetch(1).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    t.queue.enqueue(&env("wake")).await.unwrap();
    // The read blocks for up to 10 s; it must come back with the job, not empty-handed.
    let got = reader.await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].envelope.id, "wake");
    t.wipe().await;
}

#[tokio::test]
async fn orphans_are_claimed_once_and_poison_is_detected() {
    let t = TestQueue::new(QueueSettings {
        max_deliveries: 2,
        ..fast()
    })
    .await;
    t.queue.enqueue(&env("crashy")).await.unwrap();
    let mut a = t.queue.consumer("a").await.unwrap();
    let b = t.queue.consumer("b").await.unwrap();
    let c = t.queue.consumer("c").await.unwrap();
    assert_eq!(a.fetch(1).await.unwrap().len(), 1);
    // Not idle long enough yet: nobody may take it.
    let early = b.claim_orphans(10).await.unwrap();
    assert!(early.deliveries.is_empty() && early.poisoned.is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let claimed = b.claim_orphans(10).await.unwrap();
    assert_eq!(claimed.deliveries.len(), 1, "a's job goes to b");
    assert_eq!(claimed.deliveries[0].deliveries, 2);
    // A second claimer right away gets nothing: b owns it and it is fresh.
    assert!(c.claim_orphans(10).await.unwrap().deliveries.is_empty());
    // b dies too: the third delivery exceeds max_deliveries = 2.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let third = c.claim_orphans(10).await.unwrap();
    assert!(third.deliveries.is_empty());
    assert_eq!(third.poisoned.len(), 1);
    assert_eq!(third.poisoned[0].deliveries, 3);
    t.queue
        .dead_letter(&third.poisoned[0], "killed its worker 2 times")
        .await
        .unwrap();
    let d = t.queue.depth().await.unwrap();
    assert_eq!((d.waiting, d.in_flight, d.dead), (0, 0, 1));
    t.wipe().await;
}

#[tokio::test]
async fn touched_entries_are_not_orphans() {
    let t = TestQueue::new(fast()).await;
    t.queue.enqueue(&env("long")).await.unwrap();
    let mut a = t.queue.consumer("a").await.unwrap();
    let b = t.queue.consumer("b").await.unwrap();
    let got = a.fetch(1).await.unwrap();
    let ids: Vec<String> = got.iter().map(|d| d.entry_id.clone()).collect();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        a.touch(&ids).await.unwrap();
    }
    // 600 ms after delivery (orphan window 300 ms), but touched every 150 ms.
    let claimed = b.claim_orphans(10).await.unwrap();
    assert!(
        claimed.deliveries.is_empty(),
        "a live consumer's job was stolen"
    );
    t.queue.ack(&got[0]).await.unwrap();
    t.wipe().await;
}

#[tokio::test]
async fn retries_come_back_later_with_the_next_attempt() {
    let t = TestQueue::new(fast()).await;
    t.queue.enqueue(&env("flaky")).await.unwrap();
    let mut c = t.queue.consumer("w").await.unwrap();
    let first = c.fetch(1).await.unwrap().pop().unwrap();
    assert!(t.queue.retry_at(&first, now_ms() + 60_000).await.unwrap());
    assert_eq!(
        t.queue.promote_due(now_ms()).await.unwrap(),
        0,
        "not due yet"
    );
    assert_eq!(t.queue.depth().await.unwrap().delayed, 1);
    // Retrying an entry that is no longer ours does nothing.
    assert!(!t.queue.retry_at(&first, now_ms()).await.unwrap());
    assert_eq!(t.queue.promote_due(now_ms() + 61_000).await.unwrap(), 1);
    let second = c.fetch(1).await.unwrap().pop().unwrap();
    assert_eq!(second.envelope.id, "flaky");
    assert_eq!(second.envelope.attempt, 2);
    t.wipe().await;
}

#[tokio::test]
async fn twenty_thousand_due_retries_promote_without_wedging() {
    // apalis-redis 1.0 fails here ("too many results to unpack") above ~8k due jobs.
    let t = TestQueue::new(fast()).await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}:queue:jobs:delayed", t.prefix);
    for chunk in (0..20_000).collect::<Vec<u32>>().chunks(2_000) {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(&key);
        for i in chunk {
            cmd.arg(0)
                .arg(serde_json::to_string(&env(&format!("j{i}"))).unwrap());
        }
        let _: i64 = cmd.query_async(&mut conn).await.unwrap();
    }
    assert_eq!(t.queue.promote_due(now_ms()).await.unwrap(), 20_000);
    let d = t.queue.depth().await.unwrap();
    assert_eq!((d.waiting, d.delayed), (20_000, 0));
    let mut c = t.queue.consumer("drain").await.unwrap();
    let mut seen = std::collections::HashSet::new();
    loop {
        let batch = c.fetch(1_000).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for d in &batch {
            assert!(
                seen.insert(d.envelope.id.clone()),
                "duplicate {}",
                d.envelope.id
            );
            t.queue.ack(d).await.unwrap();
        }
    }
    assert_eq!(seen.len(), 20_000);
    t.wipe().await;
}

#[tokio::test]
async fn consumers_recover_when_the_queue_keys_vanish() {
    let t = TestQueue::new(fast()).await;
    let mut c = t.queue.consumer("w").await.unwrap();
    t.queue.enqueue(&env("before")).await.unwrap();
    // What a Redis restart without persistence does to us: everything is gone.
    t.wipe().await;
    assert!(
        c.fetch(1).await.unwrap().is_empty(),
        "the group is re-created"
    );
    assert!(t.queue.enqueue(&env("after")).await.unwrap());
    let got = c.fetch(1).await.unwrap();
    assert_eq!(got[0].envelope.id, "after");
    t.wipe().await;
}
