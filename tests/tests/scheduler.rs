//! The scheduler runtime on real Redis and SQL: one job per (subscription, slot), no slot twice
//! across two replicas or a split brain, leader failover, missed slots after downtime, jitter, and
//! the reconciler restoring jobs lost from Redis. Time is a `ManualClock`; nothing sleeps to wait
//! for the scheduler.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use redis::AsyncCommands;
use rust_decimal_macros::dec;
use serde_json::json;
use tradefleet::clock::{Clock, ManualClock};
use tradefleet::config::RedisConfig;
use tradefleet::domain::Timeframe;
use tradefleet::fleet::scheduler::{
    LEADER_LEASE, Scheduler, SchedulerSettings, TickReport, jitter_for,
};
use tradefleet::lock::LockManager;
use tradefleet::queue::{QueueSettings, StreamQueue, TRADING_CYCLE_QUEUE, TradingCycle, Trigger};
use tradefleet::store::{
    BotKind, NewBot, NewSubscription, RunFilter, RunStatus, RunTrigger, Store,
};
use tradefleet_tests::{TestDb, TestRedis, test_both_backends};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 7, 0, 0).unwrap()
}

fn settings() -> SchedulerSettings {
    SchedulerSettings {
        // Small batches, so a tick spans several transactions.
        batch_size: 3,
        // Three pipelines on PostgreSQL, so ticks cover the partitioned reads too.
        parallel_batches: 3,
        lease_ttl: Duration::from_secs(10),
        jitter_ms: 0,
        reconcile_after: chrono::Duration::seconds(60),
    }
}

/// `n` active subscriptions first due at `first`, every `interval` seconds.
async fn subscriptions(store: &Store, n: usize, first: DateTime<Utc>, interval: i64) -> Vec<i64> {
    let principal = store.create_principal("ann", t0()).await.unwrap();
    let bot = store
        .upsert_bot(
            &NewBot {
                name: "trend".into(),
                kind: BotKind::Technical,
                strategy: "rsi_bollinger".into(),
                default_config: json!({}),
            },
            t0(),
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..n {
        let sub = store
            .create_subscription(
                &NewSubscription {
                    principal_id: principal.id,
                    bot_id: bot.id,
                    exchange: "paper".into(),
                    symbol: "XRP/USDT:USDT".parse().unwrap(),
                    timeframes: vec![Timeframe::M5],
                    interval_seconds: interval,
                    leverage: dec!(2),
                    strategy_config: json!({}),
                    execution_config: json!({}),
                    risk_config: json!({}),
                    testnet: false,
                    first_run_at: first,
                },
                t0(),
            )
            .await
            .unwrap();
        ids.push(sub.id);
    }
    ids
}

fn redis_config(redis: &TestRedis, prefix: &str) -> RedisConfig {
    RedisConfig {
        url: redis.url().to_string(),
        key_prefix: prefix.to_string(),
        response_timeout_ms: 5_000,
    }
}

async fn queue(redis: &TestRedis) -> StreamQueue {
    StreamQueue::connect(
        redis.url(),
        redis.prefix(),
        TRADING_CYCLE_QUEUE,
        QueueSettings::default(),
    )
    .await
    .unwrap()
}

/// A scheduler on the test database and queue; its leader lease lives under `lease_prefix`.
async fn scheduler_with(
    db: &TestDb,
    redis: &TestRedis,
    lease_prefix: &str,
    clock: &Arc<ManualClock>,
    settings: SchedulerSettings,
) -> Scheduler {
    let locks = LockManager::connect(&redis_config(redis, lease_prefix))
        .await
        .unwrap();
    let clock: Arc<dyn Clock> = clock.clone();
    Scheduler::new(
        db.store().clone(),
        queue(redis).await,
        locks,
        clock,
        settings,
    )
    .unwrap()
}

async fn scheduler(db: &TestDb, redis: &TestRedis, clock: &Arc<ManualClock>) -> Scheduler {
    scheduler_with(db, redis, redis.prefix(), clock, settings()).await
}

/// The jobs in the stream, in order.
async fn stream_jobs(redis: &TestRedis) -> Vec<TradingCycle> {
    let mut conn = redis.conn();
    let key = redis.key(&format!("queue:{TRADING_CYCLE_QUEUE}:stream"));
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(&key).await.unwrap();
    reply
        .ids
        .iter()
        .map(|entry| {
            let id: String = entry.get("id").unwrap();
            let payload: String = entry.get("payload").unwrap();
            let job = TradingCycle::from_payload(&payload).unwrap();
            assert_eq!(id, job.job_id(), "the envelope id is the job id");
            job
        })
        .collect()
}

async fn all_runs(store: &Store) -> Vec<tradefleet::store::cycle_run::Model> {
    store
        .list_runs(&RunFilter {
            limit: 100_000,
            ..RunFilter::default()
        })
        .await
        .unwrap()
}

test_both_backends!(
    async fn due_subscriptions_get_exactly_one_job_per_slot(db) {
        let redis = TestRedis::new().await.unwrap();
        let ids = subscriptions(db.store(), 7, t0(), 300).await;
        let clock = Arc::new(ManualClock::new(t0() + chrono::Duration::seconds(5)));
        let mut s = scheduler(db, &redis, &clock).await;

        let report = s.tick().await.unwrap();
        assert_eq!(
            report,
            TickReport {
                leader: true,
                due: 7,
                enqueued: 7,
                skipped_slots: 0,
                reenqueued: 0,
            }
        );
        let jobs = stream_jobs(&redis).await;
        let got: BTreeSet<(i64, DateTime<Utc>)> =
            jobs.iter().map(|j| (j.subscription_id, j.slot)).collect();
        let want: BTreeSet<(i64, DateTime<Utc>)> = ids.iter().map(|id| (*id, t0())).collect();
        assert_eq!(jobs.len(), 7);
        assert_eq!(got, want);
        assert!(jobs.iter().all(|j| j.trigger == Trigger::Scheduled));
        for id in &ids {
            let sub = db.store().subscription(*id).await.unwrap();
            assert_eq!(sub.next_run_at, t0() + chrono::Duration::seconds(300));
            assert_eq!(sub.last_run_at, Some(t0()));
        }
        let runs = all_runs(db.store()).await;
        assert_eq!(runs.len(), 7);
        assert!(runs.iter().all(|r| r.status == RunStatus::Enqueued
            && r.trigger == RunTrigger::Scheduled
            && r.slot == t0()));

        // Same instant again: nothing is due, nothing is added.
        let again = s.tick().await.unwrap();
        assert_eq!((again.leader, again.due, again.enqueued), (true, 0, 0));
        assert_eq!(stream_jobs(&redis).await.len(), 7);
        assert_eq!(all_runs(db.store()).await.len(), 7);

        // The next slot comes due one interval later.
        clock.advance(chrono::Duration::seconds(300));
        let next = s.tick().await.unwrap();
        assert_eq!((next.due, next.enqueued, next.skipped_slots), (7, 7, 0));
        assert_eq!(stream_jobs(&redis).await.len(), 14);
        s.release().await.unwrap();
        redis.close().await.unwrap();
    }
);

test_both_backends!(
    async fn two_replicas_never_enqueue_a_slot_twice(db) {
        const N: usize = 5;
        const M: i64 = 6;
        let redis = TestRedis::new().await.unwrap();
        let ids = subscriptions(db.store(), N, t0(), 60).await;
        let clock = Arc::new(ManualClock::new(t0()));
        let mut a = scheduler(db, &redis, &clock).await;
        let mut b = scheduler(db, &redis, &clock).await;
        let mut leaders = Vec::new();
        for interval in 0..M {
            clock.set(t0() + chrono::Duration::seconds(60 * interval));
            // Hand the lease over half way, as a rolling restart does.
            if interval == M / 2 {
                a.release().await.unwrap();
            }
            let (first, second) = if interval % 2 == 0 {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            let r1 = first.tick().await.unwrap();
            let r2 = second.tick().await.unwrap();
            assert!(
                !(r1.leader && r2.leader),
                "two leaders in interval {interval}"
            );
            assert!(r1.leader || r2.leader, "no leader in interval {interval}");
            assert_eq!(r1.enqueued + r2.enqueued, N as u64);
            assert!(!(a.is_leader() && b.is_leader()));
            leaders.push(a.is_leader());
        }
        assert_eq!(leaders, vec![true, true, true, false, false, false]);

        let runs = all_runs(db.store()).await;
        assert_eq!(runs.len(), N * M as usize);
        let jobs = stream_jobs(&redis).await;
        assert_eq!(jobs.len(), N * M as usize);
        let distinct: HashSet<String> = jobs.iter().map(TradingCycle::job_id).collect();
        assert_eq!(distinct.len(), N * M as usize, "no slot twice");
        for id in ids {
            let slots: BTreeSet<DateTime<Utc>> = jobs
                .iter()
                .filter(|j| j.subscription_id == id)
                .map(|j| j.slot)
                .collect();
            let want: BTreeSet<DateTime<Utc>> = (0..M)
                .map(|k| t0() + chrono::Duration::seconds(60 * k))
                .collect();
            assert_eq!(slots, want);
        }
        a.release().await.unwrap();
        b.release().await.unwrap();
        redis.close().await.unwrap();
    }
);

test_both_backends!(
    async fn split_brain_leaders_still_claim_each_slot_once(db) {
        // Two replicas that both believe they lead (leases under different prefixes, as when an
        // old leader has not noticed it lost its lease) tick at the same instant, concurrently.
        // The compare-and-set on next_run_at gives every slot to exactly one of them.
        let redis = TestRedis::new().await.unwrap();
        subscriptions(db.store(), 20, t0(), 60).await;
        let clock = Arc::new(ManualClock::new(t0()));
        let other = format!("{}-other", redis.prefix());
        let mut a = scheduler(db, &redis, &clock).await;
        let mut b = scheduler_with(db, &redis, &other, &clock, settings()).await;
        for k in 0..3 {
            clock.set(t0() + chrono::Duration::seconds(60 * k));
            let (ra, rb) = tokio::join!(a.tick(), b.tick());
            let (ra, rb) = (ra.unwrap(), rb.unwrap());
            assert!(ra.leader && rb.leader);
            assert_eq!(ra.enqueued + rb.enqueued, 20, "round {k}: {ra:?} {rb:?}");
        }
        assert_eq!(all_runs(db.store()).await.len(), 60);
        let jobs = stream_jobs(&redis).await;
        let distinct: HashSet<String> = jobs.iter().map(TradingCycle::job_id).collect();
        assert_eq!((jobs.len(), distinct.len()), (60, 60));
        a.release().await.unwrap();
        b.release().await.unwrap();
        let mut conn = redis.conn();
        let _: () = conn
            .del(format!("{other}:lock:sub:{{{LEADER_LEASE}}}:fence"))
            .await
            .unwrap();
        redis.close().await.unwrap();
    }
);

test_both_backends!(
    async fn one_hour_of_downtime_runs_the_latest_slot_once(db) {
        let redis = TestRedis::new().await.unwrap();
        let ids = subscriptions(db.store(), 2, t0(), 300).await;
        let clock = Arc::new(ManualClock::new(t0()));
        let mut s = scheduler(db, &redis, &clock).await;
        assert_eq!(s.tick().await.unwrap().enqueued, 2);

        // Down for an hour: slots t0+5m .. t0+60m (12 of them) were missed.
        clock.set(t0() + chrono::Duration::hours(1));
        let report = s.tick().await.unwrap();
        assert_eq!((report.due, report.enqueued), (2, 2));
        assert_eq!(report.skipped_slots, 2 * 11);
        for id in ids {
            let runs = db
                .store()
                .list_runs(&RunFilter {
                    subscription_id: Some(id),
                    ..RunFilter::default()
                })
                .await
                .unwrap();
            let slots: Vec<DateTime<Utc>> = runs.iter().map(|r| r.slot).collect();
            assert_eq!(slots, vec![t0() + chrono::Duration::hours(1), t0()]);
            let sub = db.store().subscription(id).await.unwrap();
            assert_eq!(
                sub.next_run_at,
                t0() + chrono::Duration::hours(1) + chrono::Duration::minutes(5)
            );
        }
        assert_eq!(stream_jobs(&redis).await.len(), 4);
        s.release().await.unwrap();
        redis.close().await.unwrap();
    }
);

test_both_backends!(
    async fn the_reconciler_restores_jobs_lost_from_redis(db) {
        let redis = TestRedis::new().await.unwrap();
        let ids = subscriptions(db.store(), 4, t0(), 3_600).await;
        let clock = Arc::new(ManualClock::new(t0()));
        let mut s = scheduler(db, &redis, &clock).await;
        assert_eq!(s.tick().await.unwrap().enqueued, 4);

        // A worker picked one up; then Redis loses every queue key (stream and dedupe keys).
        let started = db.store().run_for_slot(ids[0], t0()).await.unwrap().unwrap();
        db.store()
            .set_run_status(started.id, RunStatus::Running)
            .await
            .unwrap();
        let mut conn = redis.conn();
        let keys: Vec<String> = conn
            .keys(redis.key(&format!("queue:{TRADING_CYCLE_QUEUE}:*")))
            .await
            .unwrap();
        assert!(!keys.is_empty());
        let _: () = conn.del(keys).await.unwrap();
        assert!(stream_jobs(&redis).await.is_empty());

        // Not yet stale: nothing happens.
        clock.advance(chrono::Duration::seconds(30));
        assert_eq!(s.tick().await.unwrap().reenqueued, 0);
        // Past the threshold every unfinished run gets its job back, once: the three still
        // enqueued, and the running one too (its worker may have died along with Redis's copy
        // of its job; if the worker is alive, the lock and the finished run make the repeat a
        // no-op).
        clock.advance(chrono::Duration::seconds(61));
        let report = s.tick().await.unwrap();
        assert_eq!((report.due, report.enqueued, report.reenqueued), (0, 0, 4));
        let jobs = stream_jobs(&redis).await;
        let got: BTreeSet<i64> = jobs.iter().map(|j| j.subscription_id).collect();
        assert_eq!(got, ids.iter().copied().collect());
        assert!(jobs.iter().all(|j| j.slot == t0()));
        // A later pass finds them unfinished still, but the queue's dedupe keeps one job each.
        clock.advance(chrono::Duration::seconds(61));
        assert_eq!(s.tick().await.unwrap().reenqueued, 0);
        assert_eq!(stream_jobs(&redis).await.len(), 4);
        // A finished run is never re-enqueued.
        db.store()
            .finish_run(
                started.id,
                &tradefleet::store::RunOutcome {
                    status: RunStatus::Succeeded,
                    signal: None,
                    confidence: None,
                    analysis: None,
                    error: None,
                },
                clock.now(),
            )
            .await
            .unwrap();
        let keys: Vec<String> = conn
            .keys(redis.key(&format!("queue:{TRADING_CYCLE_QUEUE}:*")))
            .await
            .unwrap();
        let _: () = conn.del(keys).await.unwrap();
        clock.advance(chrono::Duration::seconds(61));
        assert_eq!(s.tick().await.unwrap().reenqueued, 3);
        s.release().await.unwrap();
        redis.close().await.unwrap();
    }
);

#[tokio::test]
async fn jitter_delays_jobs_deterministically_and_dedupes_them() {
    let db = TestDb::postgres().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    let ids = subscriptions(db.store(), 5, t0(), 3_600).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let mut s = scheduler_with(
        &db,
        &redis,
        redis.prefix(),
        &clock,
        SchedulerSettings {
            jitter_ms: 60_000,
            ..settings()
        },
    )
    .await;
    let report = s.tick().await.unwrap();
    assert_eq!(report.enqueued, 5);
    assert!(stream_jobs(&redis).await.is_empty(), "all jobs wait");
    let mut conn = redis.conn();
    let delayed_key = redis.key(&format!("queue:{TRADING_CYCLE_QUEUE}:delayed"));
    let members: Vec<(String, i64)> = conn.zrange_withscores(&delayed_key, 0, -1).await.unwrap();
    assert_eq!(members.len(), 5);
    for (member, score) in members {
        let envelope: tradefleet::queue::Envelope = serde_json::from_str(&member).unwrap();
        let job = TradingCycle::from_payload(&envelope.payload).unwrap();
        assert!(ids.contains(&job.subscription_id));
        let want = t0().timestamp_millis()
            + i64::try_from(jitter_for(job.subscription_id, 60_000)).unwrap();
        assert_eq!(score, want);
    }
    // The reconciler's repeat is deduplicated against the delayed jobs.
    clock.advance(chrono::Duration::seconds(61));
    assert_eq!(s.tick().await.unwrap().reenqueued, 0);
    assert_eq!(queue(&redis).await.depth().await.unwrap().delayed, 5);
    s.release().await.unwrap();
    redis.close().await.unwrap();
    db.close().await;
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leader_stops_renewing() {
    let db = TestDb::postgres().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    subscriptions(db.store(), 3, t0(), 60).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let ttl = Duration::from_millis(400);
    let short = SchedulerSettings {
        lease_ttl: ttl,
        ..settings()
    };

    // The leader lives on a runtime of its own, which then dies without releasing anything:
    // its renewal task stops, as when the process is killed.
    let (url, prefix, db_url) = (
        redis.url().to_string(),
        redis.prefix().to_string(),
        db.url().to_string(),
    );
    let (leader_clock, leader_settings) = (clock.clone(), short.clone());
    let leader_fence = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut leader = rt.block_on(async {
            let cfg = RedisConfig {
                url: url.clone(),
                key_prefix: prefix.clone(),
                response_timeout_ms: 5_000,
            };
            let locks = LockManager::connect(&cfg).await.unwrap();
            let queue =
                StreamQueue::connect(&url, &prefix, TRADING_CYCLE_QUEUE, QueueSettings::default())
                    .await
                    .unwrap();
            // A pool of its own: connections belong to the runtime that opened them.
            let store = tradefleet::store::connect(&db_url, 2).await.unwrap();
            let c: Arc<dyn Clock> = leader_clock;
            Scheduler::new(store, queue, locks, c, leader_settings).unwrap()
        });
        let report = rt.block_on(leader.tick()).unwrap();
        assert!(report.leader);
        assert_eq!(report.enqueued, 3);
        let fence = leader.fencing_token().unwrap();
        std::mem::forget(leader);
        rt.shutdown_background();
        fence
    })
    .join()
    .unwrap();

    let mut standby = scheduler_with(&db, &redis, redis.prefix(), &clock, short).await;
    let lease_key = redis.key(&format!("lock:sub:{{{LEADER_LEASE}}}"));
    let mut conn = redis.conn();
    let mut standby_ticks = 0;
    loop {
        let before: bool = conn.exists(&lease_key).await.unwrap();
        let report = standby.tick().await.unwrap();
        standby_ticks += 1;
        if before {
            // While the dead leader's lease stands, the standby only waits.
            let after: bool = conn.exists(&lease_key).await.unwrap();
            if after {
                assert!(!report.leader);
                assert_eq!(report.enqueued, 0);
            }
        } else {
            // Free lease (expired within its TTL): the very next tick takes it.
            assert!(report.leader);
            break;
        }
        if report.leader {
            break;
        }
        assert!(standby_ticks < 1_000, "the lease never expired");
        tokio::time::sleep(ttl / 8).await;
    }
    assert!(
        standby_ticks > 1,
        "the dead leader's lease held for a while"
    );
    assert!(standby.fencing_token().unwrap() > leader_fence);
    // Nothing was due again, so the takeover enqueued nothing twice.
    assert_eq!(stream_jobs(&redis).await.len(), 3);
    standby.release().await.unwrap();
    redis.close().await.unwrap();
    db.close().await;
}

#[tokio::test]
async fn more_batch_writers_than_pooled_connections_still_finish_the_tick() {
    // Eight writers over a pool of two connections: a page read waiting for a connection must
    // not stop the writers holding them (all polled by one task) from finishing.
    let db = TestDb::postgres().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    subscriptions(db.store(), 40, t0(), 60).await;
    let small = tradefleet::store::connect(db.url(), 2).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(t0()));
    let mut s = Scheduler::new(
        small.clone(),
        queue(&redis).await,
        LockManager::connect(&redis_config(&redis, redis.prefix()))
            .await
            .unwrap(),
        clock,
        SchedulerSettings {
            parallel_batches: 8,
            ..settings()
        },
    )
    .unwrap();
    let report = s.tick().await.unwrap();
    assert_eq!((report.due, report.enqueued), (40, 40));
    assert_eq!(all_runs(db.store()).await.len(), 40);
    s.release().await.unwrap();
    small.close().await.ok();
    redis.close().await.unwrap();
    db.close().await;
}
