//! Process-level fault tests of the fleet: real `scheduler` and `worker` processes over real
//! Redis and PostgreSQL, killed (SIGKILL), stopped (SIGTERM) and cut off from their servers.
//!
//! Tests that stop a server use one of their own (`PrivateRedis`, `PrivatePostgres`), so no other
//! test is disturbed. Every spawned process is killed when its guard drops, so a failing test
//! leaves nothing behind.
//!
//! Market: PAPER over the bundled XRP/USDT 5m data, which ended in 2021, so at today's clock the
//! market is frozen at its last candles and every cycle sees the same ones. The bot's config
//! (`rsi_bollinger`, 2-candle bands at 0.5 deviations, oversold 99) buys on them: the last close
//! is below the previous one. With the market frozen the stop and target never trigger, so a
//! subscription enters once, at its first slot, and holds afterwards: each account must show
//! exactly one entry, one stop-loss and one take-profit order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use redis::AsyncCommands;
use rust_decimal_macros::dec;
use serde_json::json;
use tradefleet::bot::execution::TEST_HOLD_AFTER_ENTRY_ENV;
use tradefleet::bot::order_ids::{OrderRole, client_order_id};
use tradefleet::domain::Timeframe;
use tradefleet::queue::{
    Envelope, QueueSettings, StreamQueue, TRADING_CYCLE_QUEUE, TradingCycle, Trigger,
};
use tradefleet::store::{
    self, BotKind, NewBot, NewRun, NewSubscription, RunFilter, RunStatus, RunTrigger, Store,
    cycle_run,
};
use tradefleet_tests::private::{
    FleetEnv, FleetProcess, PrivatePostgres, PrivateRedis, http_status, wait_for,
};
use tradefleet_tests::{TestDb, TestRedis};

/// Only a failing test waits this long for one condition.
const PATIENCE: Duration = Duration::from_secs(30);

/// The strategy config that enters (see the module docs).
fn entering_config() -> serde_json::Value {
    json!({
        "bb_period": 2,
        "bb_deviations": 0.5,
        "oversold": 99.0,
        "overbought": 99.5,
    })
}

/// `n` PAPER subscriptions (one principal) every `interval` seconds from `first`.
async fn subscriptions(store: &Store, n: usize, interval: i64, first: DateTime<Utc>) -> Vec<i64> {
    let now = Utc::now();
    let principal = store.create_principal("faults", now).await.unwrap();
    let bot = store
        .upsert_bot(
            &NewBot {
                name: "mean_reversion".into(),
                kind: BotKind::Technical,
                strategy: "rsi_bollinger".into(),
                default_config: entering_config(),
            },
            now,
        )
        .await
        .unwrap();
    let mut ids = Vec::with_capacity(n);
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
                now,
            )
            .await
            .unwrap();
        ids.push(sub.id);
    }
    ids
}

/// A whole second a little ahead, so the first slot is on a clean grid.
fn next_second(ahead_ms: i64) -> DateTime<Utc> {
    let t = Utc::now().timestamp_millis() + ahead_ms;
    Utc.timestamp_opt(t.div_euclid(1000) + 1, 0).unwrap()
}

async fn all_runs(store: &Store) -> anyhow::Result<Vec<cycle_run::Model>> {
    Ok(store
        .list_runs(&RunFilter {
            limit: 100_000,
            ..RunFilter::default()
        })
        .await?)
}

/// Runs per subscription, oldest slot first.
fn by_subscription(runs: &[cycle_run::Model]) -> BTreeMap<i64, Vec<cycle_run::Model>> {
    let mut map: BTreeMap<i64, Vec<cycle_run::Model>> = BTreeMap::new();
    for r in runs {
        map.entry(r.subscription_id).or_default().push(r.clone());
    }
    for v in map.values_mut() {
        v.sort_by_key(|r| r.slot);
    }
    map
}

/// Waits until every run is terminal; returns them.
async fn settled(store: &Store) -> anyhow::Result<Vec<cycle_run::Model>> {
    wait_for(PATIENCE, "every run to finish", || async {
        let runs = all_runs(store).await?;
        Ok(runs.iter().all(|r| r.status.is_terminal()).then_some(runs))
    })
    .await
}

/// The orders of a subscription's PAPER account, by client order id.
async fn paper_orders(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    sub: i64,
) -> Vec<serde_json::Value> {
    let key = format!("{prefix}:paper:account:sub-{sub}");
    let text: Option<String> = conn.get(&key).await.unwrap();
    let Some(text) = text else { return Vec::new() };
    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
    state["orders"].as_array().cloned().unwrap_or_default()
}

/// How many orders the account holds per role, over all slots; panics on an order of no slot of
/// `slots` (each role of each slot has one fixed client order id).
async fn orders_per_role(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    sub: i64,
    slots: &[DateTime<Utc>],
) -> HashMap<&'static str, usize> {
    let mut ids = HashMap::new();
    for slot in slots {
        for (role, name) in [
            (OrderRole::Entry, "entry"),
            (OrderRole::StopLoss, "stop_loss"),
            (OrderRole::TakeProfit, "take_profit"),
            (OrderRole::Close, "close"),
        ] {
            ids.insert(
                client_order_id(sub, *slot, role, 0).unwrap().to_string(),
                name,
            );
        }
    }
    let mut counts = HashMap::new();
    for order in paper_orders(conn, prefix, sub).await {
        let id = order["client_order_id"].as_str().unwrap_or_default();
        let role = ids
            .get(id)
            .unwrap_or_else(|| panic!("order {id:?} of subscription {sub} is of no known slot"));
        *counts.entry(*role).or_insert(0) += 1;
    }
    counts
}

fn one_bracket() -> HashMap<&'static str, usize> {
    HashMap::from([("entry", 1), ("stop_loss", 1), ("take_profit", 1)])
}

async fn queue(url: &str, prefix: &str) -> StreamQueue {
    StreamQueue::connect(url, prefix, TRADING_CYCLE_QUEUE, QueueSettings::default())
        .await
        .unwrap()
}

fn job(sub: i64, slot: DateTime<Utc>) -> Envelope {
    let job = TradingCycle {
        subscription_id: sub,
        slot,
        trigger: Trigger::Manual,
        trace_context: Default::default(),
    };
    Envelope {
        id: job.job_id(),
        attempt: 1,
        payload: job.to_payload(),
    }
}

async fn wait_run(store: &Store, sub: i64, slot: DateTime<Utc>) -> cycle_run::Model {
    try_wait_run(store, sub, slot).await.unwrap()
}

async fn try_wait_run(
    store: &Store,
    sub: i64,
    slot: DateTime<Utc>,
) -> anyhow::Result<cycle_run::Model> {
    // Long enough for a retry that backed off to a minute.
    wait_for(PATIENCE * 3, "the run to succeed", || async {
        let run = store.run_for_slot(sub, slot).await?;
        Ok(run.filter(|r| r.status == RunStatus::Succeeded))
    })
    .await
}

async fn is_leader(p: &FleetProcess) -> Option<bool> {
    let port = p.port;
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        // The sample line, not the HELP text (which reads "1 while this scheduler ...").
        text.lines()
            .find_map(|l| l.strip_prefix("tradefleet_scheduler_leader "))
            .map(|v| v.trim() == "1")
    })
    .await
    .unwrap()
}

/// Test 6: a payload that is not a job goes to the `dead_letters` table; the worker keeps
/// running and the next good job completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_payload_is_dead_lettered_and_the_worker_carries_on() {
    let db = TestDb::postgres().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    let store = db.store();
    let subs = subscriptions(store, 1, 300, Utc::now() + chrono::Duration::days(1)).await;
    let env = FleetEnv::new(db.url(), redis.url(), redis.prefix());
    let mut worker = env.spawn("worker", &[]).unwrap();
    worker.wait_ready(PATIENCE).await.unwrap();

    let q = queue(redis.url(), redis.prefix()).await;
    let bad = Envelope {
        id: "malformed-1".into(),
        attempt: 1,
        payload: "{\"subscription_id\": \"not a number\"".into(),
    };
    assert!(q.enqueue(&bad).await.unwrap());
    let letter = wait_for(PATIENCE, "the dead letter", || async {
        let letters = store.list_dead_letters(None, 10).await?;
        Ok(letters
            .into_iter()
            .find(|l| l.job_id.as_deref() == Some("malformed-1")))
    })
    .await
    .unwrap();
    assert_eq!(letter.payload, bad.payload);
    assert_eq!(letter.queue, TRADING_CYCLE_QUEUE);
    assert!(!letter.error.is_empty());

    let slot = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    assert!(q.enqueue(&job(subs[0], slot)).await.unwrap());
    wait_run(store, subs[0], slot).await;
    assert!(worker.exited().unwrap().is_none(), "the worker died");
    assert_eq!(
        tokio::task::spawn_blocking({
            let port = worker.port;
            move || http_status(port, "/readyz")
        })
        .await
        .unwrap(),
        Some(200)
    );
    assert_eq!(store.list_dead_letters(None, 10).await.unwrap().len(), 1);
    assert_eq!(q.depth().await.unwrap().dead, 1);
    drop(worker);
    redis.close().await.unwrap();
    db.close().await;
}

/// Test 7: SIGTERM while a cycle is held right after its entry order: the cycle completes
/// (stop-loss and take-profit placed, run succeeded), the process exits 0 and the subscription
/// lock is gone from Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_cycle_finish_and_frees_its_lock() {
    let db = TestDb::postgres().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    let store = db.store();
    let subs = subscriptions(store, 1, 300, Utc::now() + chrono::Duration::days(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let hold = dir.path().join("hold");
    let reached = dir.path().join("hold.reached");
    std::fs::write(&hold, b"").unwrap();
    let env = FleetEnv::new(db.url(), redis.url(), redis.prefix());
    let mut worker = env
        .spawn(
            "worker",
            &[(TEST_HOLD_AFTER_ENTRY_ENV, hold.display().to_string())],
        )
        .unwrap();
    worker.wait_ready(PATIENCE).await.unwrap();

    let q = queue(redis.url(), redis.prefix()).await;
    let slot = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    q.enqueue(&job(subs[0], slot)).await.unwrap();
    wait_for(PATIENCE, "the cycle to reach the hold", || async {
        Ok(reached.exists().then_some(()))
    })
    .await
    .unwrap();
    let lock = redis.key(&format!("lock:sub:{{{}}}", subs[0]));
    let mut conn = redis.conn();
    assert!(conn.exists::<_, bool>(&lock).await.unwrap());

    worker.signal("TERM").unwrap();
    // Still held: the run is running and the process waits for it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(worker.exited().unwrap().is_none(), "exited mid-cycle");
    let run = store.run_for_slot(subs[0], slot).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Running);

    std::fs::remove_file(&hold).unwrap();
    let status = worker.wait_exit(PATIENCE).await.unwrap();
    assert!(status.success(), "{status:?}\n{}", worker.log_text());
    let run = store.run_for_slot(subs[0], slot).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert!(
        !conn.exists::<_, bool>(&lock).await.unwrap(),
        "the lock outlived the worker"
    );
    assert_eq!(
        orders_per_role(&mut conn, redis.prefix(), subs[0], &[slot]).await,
        one_bracket()
    );
    redis.close().await.unwrap();
    db.close().await;
}

/// Test 3: two schedulers never enqueue a slot twice; SIGKILL the leader and the standby takes
/// over within the lease TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_scheduler_takes_over_from_a_killed_leader() {
    let db = TestDb::postgres().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    let store = db.store();
    let interval = 1;
    let subs = subscriptions(store, 3, interval, next_second(0)).await;
    let lease_ttl = Duration::from_millis(2_000);
    let env = FleetEnv::new(db.url(), redis.url(), redis.prefix())
        .with("TRADEFLEET__SCHEDULER__TICK_MS", 100)
        .with("TRADEFLEET__SCHEDULER__LEASE_TTL_MS", lease_ttl.as_millis());
    let mut a = env.spawn("scheduler", &[]).unwrap();
    let mut b = env.spawn("scheduler", &[]).unwrap();
    a.wait_ready(PATIENCE).await.unwrap();
    b.wait_ready(PATIENCE).await.unwrap();

    // Exactly one leader, while both run a few slots.
    let (leader, standby) = wait_for(PATIENCE, "a single leader", || async {
        Ok(match (is_leader(&a).await, is_leader(&b).await) {
            (Some(true), Some(false)) => Some((0, 1)),
            (Some(false), Some(true)) => Some((1, 0)),
            _ => None,
        })
    })
    .await
    .unwrap();
    let mut procs = [a, b];
    wait_for(PATIENCE, "three slots per subscription", || async {
        let runs = by_subscription(&all_runs(store).await?);
        Ok((runs.len() == subs.len() && runs.values().all(|r| r.len() >= 3)).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(is_leader(&procs[standby]).await, Some(false));

    procs[leader].signal("KILL").unwrap();
    let killed = Instant::now();
    procs[leader].wait_exit(PATIENCE).await.unwrap();
    let killed_at = Utc::now();
    wait_for(PATIENCE, "the standby to lead", || async {
        Ok((is_leader(&procs[standby]).await == Some(true)).then_some(()))
    })
    .await
    .unwrap();
    let takeover = killed.elapsed();
    // The lease expires within its TTL; the standby's next tick (100 ms) then takes it.
    assert!(
        takeover <= lease_ttl + Duration::from_millis(1_500),
        "takeover took {takeover:?}"
    );
    eprintln!("standby took over {takeover:?} after the leader was killed");
    wait_for(PATIENCE, "slots enqueued by the new leader", || async {
        let runs = all_runs(store).await?;
        let after = runs.iter().filter(|r| r.slot > killed_at).count();
        Ok((after >= subs.len() * 2).then_some(()))
    })
    .await
    .unwrap();
    procs[standby].signal("TERM").unwrap();
    assert!(procs[standby].wait_exit(PATIENCE).await.unwrap().success());

    // Every run has exactly one job on the stream (no worker ran any) and no job is repeated.
    let runs = all_runs(store).await.unwrap();
    let mut conn = redis.conn();
    let reply: redis::streams::StreamRangeReply = conn
        .xrange_all(redis.key(&format!("queue:{TRADING_CYCLE_QUEUE}:stream")))
        .await
        .unwrap();
    let mut jobs: HashMap<(i64, DateTime<Utc>), usize> = HashMap::new();
    for entry in &reply.ids {
        let j = TradingCycle::from_payload(&entry.get::<String>("payload").unwrap()).unwrap();
        *jobs.entry((j.subscription_id, j.slot)).or_insert(0) += 1;
    }
    assert!(
        jobs.values().all(|n| *n == 1),
        "a slot was enqueued twice: {jobs:?}"
    );
    assert_eq!(jobs.len(), runs.len());
    for r in &runs {
        assert_eq!(r.status, RunStatus::Enqueued);
        assert!(jobs.contains_key(&(r.subscription_id, r.slot)), "{r:?}");
    }
    // Both leaders kept the grid: every slot is on it.
    for (sub, rs) in by_subscription(&runs) {
        let first = rs[0].slot;
        for r in &rs {
            assert_eq!((r.slot - first).num_seconds() % interval, 0, "sub {sub}");
        }
    }
    redis.close().await.unwrap();
    db.close().await;
}

/// Test 1: N subscriptions x M slots over 3 worker processes and the scheduler: exactly N x M
/// runs, all succeeded, each slot once, no slot of the grid missing, and one entry bracket per
/// subscription on the exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_run_every_slot_exactly_once() {
    const N: usize = 6;
    const M: usize = 3;
    let db = TestDb::postgres().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    let store = db.store();
    let interval = 3;
    let first = next_second(500);
    let subs = subscriptions(store, N, interval, first).await;
    let env = FleetEnv::new(db.url(), redis.url(), redis.prefix())
        .with("TRADEFLEET__SCHEDULER__TICK_MS", 100)
        .with("TRADEFLEET__WORKER__CONCURRENCY", 4);
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(env.spawn("worker", &[]).unwrap());
    }
    for w in &mut workers {
        w.wait_ready(PATIENCE).await.unwrap();
    }
    let mut scheduler = env.spawn("scheduler", &[]).unwrap();
    scheduler.wait_ready(PATIENCE).await.unwrap();

    wait_for(PATIENCE, "M slots per subscription", || async {
        let runs = by_subscription(&all_runs(store).await?);
        Ok((runs.len() == N && runs.values().all(|r| r.len() >= M)).then_some(()))
    })
    .await
    .unwrap();
    // Slots are `interval` s apart: stopping now ends the schedule at M slots.
    scheduler.signal("TERM").unwrap();
    assert!(scheduler.wait_exit(PATIENCE).await.unwrap().success());

    let runs = settled(store).await.unwrap();
    assert_eq!(runs.len(), N * M, "{runs:#?}");
    let grid: Vec<DateTime<Utc>> = (0..M as i64)
        .map(|k| first + chrono::Duration::seconds(k * interval))
        .collect();
    let mut conn = redis.conn();
    for (sub, rs) in by_subscription(&runs) {
        let slots: Vec<DateTime<Utc>> = rs.iter().map(|r| r.slot).collect();
        assert_eq!(slots, grid, "subscription {sub}: a gap or a duplicate");
        for r in &rs {
            assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
        }
        assert_eq!(
            orders_per_role(&mut conn, redis.prefix(), sub, &grid).await,
            one_bracket(),
            "subscription {sub}"
        );
    }
    // The work was shared: more than one worker ran cycles.
    let ran: std::collections::HashSet<_> =
        runs.iter().filter_map(|r| r.worker_id.clone()).collect();
    assert!(ran.len() > 1, "one worker ran everything: {ran:?}");
    for w in &mut workers {
        assert!(w.exited().unwrap().is_none());
        w.signal("TERM").unwrap();
    }
    for w in &mut workers {
        assert!(w.wait_exit(PATIENCE).await.unwrap().success());
    }
    assert_eq!(subs.len(), N);
    redis.close().await.unwrap();
    db.close().await;
}

/// Test 2: a worker SIGKILLed right after its entry order: another worker claims the job after
/// the orphan window, finishes the entry (stop-loss, take-profit) and the exchange holds exactly
/// one entry, one stop-loss and one take-profit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_cycle_finishes_on_another_without_a_second_entry() {
    let db = TestDb::postgres().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    let store = db.store();
    let subs = subscriptions(store, 1, 300, Utc::now() + chrono::Duration::days(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let hold = dir.path().join("hold");
    let reached = dir.path().join("hold.reached");
    std::fs::write(&hold, b"").unwrap();
    let env = FleetEnv::new(db.url(), redis.url(), redis.prefix())
        .with("TRADEFLEET__WORKER__ORPHAN_IDLE_MS", 1_000)
        .with("TRADEFLEET__WORKER__LOCK_TTL_MS", 1_000);
    let mut a = env
        .spawn(
            "worker",
            &[
                (TEST_HOLD_AFTER_ENTRY_ENV, hold.display().to_string()),
                ("TRADEFLEET__WORKER__ID", "worker-a".into()),
            ],
        )
        .unwrap();
    a.wait_ready(PATIENCE).await.unwrap();
    let q = queue(redis.url(), redis.prefix()).await;
    let slot = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    q.enqueue(&job(subs[0], slot)).await.unwrap();
    wait_for(PATIENCE, "worker A to hold after its entry", || async {
        Ok(reached.exists().then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&reached).unwrap(),
        a.pid().to_string()
    );
    let mut b = env
        .spawn("worker", &[("TRADEFLEET__WORKER__ID", "worker-b".into())])
        .unwrap();
    b.wait_ready(PATIENCE).await.unwrap();
    let mut conn = redis.conn();
    let before = orders_per_role(&mut conn, redis.prefix(), subs[0], &[slot]).await;
    assert_eq!(before, HashMap::from([("entry", 1)]));

    a.signal("KILL").unwrap();
    a.wait_exit(PATIENCE).await.unwrap();
    let run = wait_run(store, subs[0], slot).await;
    assert_eq!(run.worker_id.as_deref(), Some("worker-b"), "{run:?}");
    assert!(run.attempt >= 1);
    assert_eq!(
        orders_per_role(&mut conn, redis.prefix(), subs[0], &[slot]).await,
        one_bracket(),
        "worker B log:\n{}",
        b.log_text()
    );
    // The position is recorded once, with its protective orders.
    let positions = store.list_positions(subs[0], None).await.unwrap();
    assert_eq!(positions.len(), 1, "{positions:?}");
    assert!(b.exited().unwrap().is_none());
    redis.close().await.unwrap();
    db.close().await;
}

/// Test 4: Redis restarted (empty) mid-run: the scheduler and the workers reconnect by
/// themselves; the reconciler re-enqueues runs whose jobs were lost; no slot is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_recovers_from_a_redis_restart() {
    let db = TestDb::postgres().await.unwrap();
    let mut redis = PrivateRedis::start().await.unwrap();
    let store = db.store();
    let prefix = "tf_faults";
    let interval = 2;
    let subs = subscriptions(store, 3, interval, next_second(500)).await;
    let env = FleetEnv::new(db.url(), &redis.url(), prefix)
        .with("TRADEFLEET__SCHEDULER__TICK_MS", 100)
        .with("TRADEFLEET__SCHEDULER__LEASE_TTL_MS", 2_000)
        .with("TRADEFLEET__SCHEDULER__RECONCILE_AFTER_MS", 3_000)
        .with("TRADEFLEET__REDIS__RESPONSE_TIMEOUT_MS", 1_000)
        .with("TRADEFLEET__WORKER__ORPHAN_IDLE_MS", 2_000);
    let mut workers = vec![
        env.spawn("worker", &[]).unwrap(),
        env.spawn("worker", &[]).unwrap(),
    ];
    for w in &mut workers {
        w.wait_ready(PATIENCE).await.unwrap();
    }
    let mut scheduler = env.spawn("scheduler", &[]).unwrap();
    scheduler.wait_ready(PATIENCE).await.unwrap();
    wait_for(PATIENCE, "two succeeded slots per subscription", || async {
        let runs = by_subscription(&all_runs(store).await?);
        Ok((runs.len() == subs.len()
            && runs.values().all(|r| {
                r.iter()
                    .filter(|r| r.status == RunStatus::Succeeded)
                    .count()
                    >= 2
            }))
        .then_some(()))
    })
    .await
    .unwrap();

    // A run the scheduler committed whose job waits in Redis (delayed, as with jitter): the
    // restart loses the job, and the reconciler must enqueue it again.
    let lost_slot = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    store
        .insert_run(&NewRun {
            subscription_id: subs[0],
            slot: lost_slot,
            trigger: RunTrigger::Manual,
            enqueued_at: Utc::now(),
        })
        .await
        .unwrap();
    let later = Utc::now().timestamp_millis() + 3_600_000;
    assert_eq!(
        queue(&redis.url(), prefix)
            .await
            .enqueue_many_at(&[(job(subs[0], lost_slot), later)])
            .await
            .unwrap(),
        1
    );
    redis.stop();
    let down = Instant::now();
    // Down across at least one slot of every subscription.
    while down.elapsed() < Duration::from_secs(3) {
        for p in workers.iter_mut().chain(std::iter::once(&mut scheduler)) {
            assert!(p.exited().unwrap().is_none(), "{}", p.log_text());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    redis.restart().await.unwrap();
    let restarted_at = Utc::now();

    // After the restart: new slots run again, and every run recorded before finishes.
    wait_for(
        PATIENCE,
        "two slots after the restart per subscription",
        || async {
            let runs = by_subscription(&all_runs(store).await?);
            Ok(runs
                .values()
                .all(|r| {
                    r.iter()
                        .filter(|r| r.slot > restarted_at && r.status == RunStatus::Succeeded)
                        .count()
                        >= 2
                })
                .then_some(()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\nscheduler log:\n{}", scheduler.log_text()));
    let lost = wait_run(store, subs[0], lost_slot).await;
    assert_eq!(lost.trigger, RunTrigger::Manual);
    scheduler.signal("TERM").unwrap();
    assert!(scheduler.wait_exit(PATIENCE).await.unwrap().success());
    let runs = settled(store).await.unwrap_or_else(|e| {
        panic!(
            "{e:#}\nworker logs:\n{}\n{}",
            workers[0].log_text(),
            workers[1].log_text()
        )
    });
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for (sub, rs) in by_subscription(&runs) {
        let grid0 = rs
            .iter()
            .find(|r| r.trigger == RunTrigger::Scheduled)
            .unwrap()
            .slot;
        for r in &rs {
            assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
            if r.trigger == RunTrigger::Scheduled {
                assert_eq!((r.slot - grid0).num_seconds() % interval, 0, "{r:?}");
            }
        }
        // The PAPER account lived in the Redis that was lost: a fresh account after the restart
        // enters again; never more than one bracket per account life.
        let slots: Vec<DateTime<Utc>> = rs.iter().map(|r| r.slot).collect();
        let counts = orders_per_role(&mut conn, prefix, sub, &slots).await;
        assert!(
            counts.is_empty() || counts == one_bracket(),
            "subscription {sub}: {counts:?}"
        );
    }
    for w in &mut workers {
        assert!(w.exited().unwrap().is_none(), "{}", w.log_text());
        w.signal("TERM").unwrap();
        assert!(w.wait_exit(PATIENCE).await.unwrap().success());
    }
    db.close().await;
}

/// Test 5: PostgreSQL unreachable for 10 s: the processes stay up, cycles retry and complete
/// afterwards, nothing recorded is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_rides_out_a_postgres_outage() {
    let mut pg = PrivatePostgres::start_new().await.unwrap();
    let url = pg.migrated_database("tradefleet").await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    let store = store::connect(&url, 4).await.unwrap();
    let interval = 2;
    let subs = subscriptions(&store, 3, interval, next_second(500)).await;
    // Eight attempts: the retries (2 s doubling) span minutes, so the job outlives the outage
    // and a slow restart on a loaded machine; five span only ~15-30 s.
    let env = FleetEnv::new(&url, redis.url(), redis.prefix())
        .with("TRADEFLEET__SCHEDULER__TICK_MS", 100)
        .with("TRADEFLEET__DATABASE__CONNECT_TIMEOUT_MS", 1_000)
        .with("TRADEFLEET__WORKER__MAX_ATTEMPTS", 8);
    let mut workers = vec![
        env.spawn("worker", &[]).unwrap(),
        env.spawn("worker", &[]).unwrap(),
    ];
    for w in &mut workers {
        w.wait_ready(PATIENCE).await.unwrap();
    }
    let mut scheduler = env.spawn("scheduler", &[]).unwrap();
    scheduler.wait_ready(PATIENCE).await.unwrap();
    wait_for(PATIENCE, "a succeeded slot per subscription", || async {
        let runs = by_subscription(&all_runs(&store).await?);
        Ok((runs.len() == subs.len()
            && runs
                .values()
                .all(|r| r.iter().any(|r| r.status == RunStatus::Succeeded)))
        .then_some(()))
    })
    .await
    .unwrap();

    pg.stop().await.unwrap();
    let down = Instant::now();
    // A job popped while the database is down: its attempts fail and are retried.
    let manual_slot = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    queue(redis.url(), redis.prefix())
        .await
        .enqueue(&job(subs[0], manual_slot))
        .await
        .unwrap();
    while down.elapsed() < Duration::from_secs(10) {
        for p in workers.iter_mut().chain(std::iter::once(&mut scheduler)) {
            assert!(p.exited().unwrap().is_none(), "{}", p.log_text());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pg.start().await.unwrap();
    let back_at = Utc::now();

    wait_for(PATIENCE, "slots after the outage", || async {
        let runs = by_subscription(&all_runs(&store).await?);
        Ok(runs
            .values()
            .all(|r| {
                r.iter()
                    .any(|r| r.slot > back_at && r.status == RunStatus::Succeeded)
            })
            .then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\nscheduler log:\n{}", scheduler.log_text()));
    let manual = match try_wait_run(&store, subs[0], manual_slot).await {
        Ok(run) => run,
        Err(e) => panic!(
            "{e:#}\nrun: {:?}\nworker logs:\n{}\n{}",
            store.run_for_slot(subs[0], manual_slot).await,
            workers[0].log_text(),
            workers[1].log_text()
        ),
    };
    assert!(manual.attempt >= 2, "the job was not retried: {manual:?}");
    scheduler.signal("TERM").unwrap();
    assert!(scheduler.wait_exit(PATIENCE).await.unwrap().success());
    let runs = match settled(&store).await {
        Ok(runs) => runs,
        Err(e) => {
            let open: Vec<_> = all_runs(&store)
                .await
                .unwrap()
                .into_iter()
                .filter(|r| !r.status.is_terminal())
                .collect();
            panic!(
                "{e:#}\nunfinished: {open:#?}\nworker logs:\n{}\n{}",
                workers[0].log_text(),
                workers[1].log_text()
            )
        }
    };
    let mut conn = redis.conn();
    for (sub, rs) in by_subscription(&runs) {
        let slots: Vec<DateTime<Utc>> = rs.iter().map(|r| r.slot).collect();
        for r in &rs {
            assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
        }
        assert_eq!(
            orders_per_role(&mut conn, redis.prefix(), sub, &slots).await,
            one_bracket(),
            "subscription {sub}"
        );
    }
    for w in &mut workers {
        assert!(w.exited().unwrap().is_none(), "{}", w.log_text());
        w.signal("TERM").unwrap();
        assert!(w.wait_exit(PATIENCE).await.unwrap().success());
    }
    store.close().await.ok();
    redis.close().await.unwrap();
}
