//! The worker runtime end to end on real Redis and PostgreSQL: several in-process workers run
//! N subscriptions x M slots exactly once each on PAPER; a duplicate job is a no-op; a malformed
//! payload lands in the SQL dead letters while the worker keeps running; a contended lock is
//! retried; the fencing floor survives a lost Redis counter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal_macros::dec;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tradefleet::bot::signal::Signal;
use tradefleet::bot::strategy::{MarketView, Strategy, StrategyError};
use tradefleet::clock::ManualClock;
use tradefleet::config::RedisConfig;
use tradefleet::domain::{PositionSide, Timeframe};
use tradefleet::exchange::paper::PaperSettings;
use tradefleet::fleet::worker::{
    JobError, JobOutcome, StrategyFactory, Worker, WorkerDeps, WorkerSettings,
};
use tradefleet::lock::LockManager;
use tradefleet::queue::{
    Envelope, JobInfo, QueueSettings, RetryPolicy, StreamQueue, TRADING_CYCLE_QUEUE, TradingCycle,
    Trigger,
};
use tradefleet::store::{
    BotKind, NewBot, NewSubscription, NewTrade, RunFilter, RunStatus, Store, StoreError,
    SubscriptionStatus, subscription,
};
use tradefleet::telemetry::Metrics;
use tradefleet_tests::{TestDb, TestRedis};

/// 2021-11-17 00:00 UTC on the bundled XRP/USDT data.
const T0: i64 = 1_637_107_200;
/// Generous bound for the fleet to finish its work; only a failure waits this long.
const PATIENCE: Duration = Duration::from_secs(90);

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

/// Buys on every cycle (the cycle enters only when flat).
#[derive(Debug)]
struct AlwaysBuy;

impl Strategy for AlwaysBuy {
    fn name(&self) -> &'static str {
        "always_buy"
    }
    fn validate(&self) -> Result<(), StrategyError> {
        Ok(())
    }
    fn generate(&self, view: &MarketView<'_>) -> Result<Signal, StrategyError> {
        let last = view.shortest().and_then(|f| f.last()).unwrap();
        Ok(Signal::buy(
            last.close,
            dec!(1.0800),
            dec!(1.2000),
            0.8,
            vec!["test".into()],
        )
        .unwrap())
    }
}

struct Fleet {
    db: TestDb,
    redis: TestRedis,
    queue: StreamQueue,
}

impl Fleet {
    async fn new() -> Self {
        let db = TestDb::postgres().await.unwrap();
        let redis = TestRedis::new().await.unwrap();
        let queue = StreamQueue::connect(
            redis.url(),
            redis.prefix(),
            TRADING_CYCLE_QUEUE,
            QueueSettings {
                block_ms: 100,
                ..QueueSettings::default()
            },
        )
        .await
        .unwrap();
        Self { db, redis, queue }
    }

    fn store(&self) -> &Store {
        self.db.store()
    }

    async fn locks(&self) -> LockManager {
        LockManager::connect(&RedisConfig {
            url: self.redis.url().to_string(),
            key_prefix: self.redis.prefix().to_string(),
            ..RedisConfig::default()
        })
        .await
        .unwrap()
    }

    async fn worker(&self, id: &str) -> Worker {
        self.worker_with(
            id,
            Arc::new(|_: &str, _: &serde_json::Value| Ok(Box::new(AlwaysBuy) as Box<dyn Strategy>)),
        )
        .await
    }

    async fn worker_with(&self, id: &str, strategies: StrategyFactory) -> Worker {
        let client = redis::Client::open(self.redis.url()).unwrap();
        let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
        Worker::new(
            WorkerDeps {
                store: self.store().clone(),
                locks: self.locks().await,
                redis: conn,
                key_prefix: self.redis.prefix().to_string(),
                keyring: None,
                llm: None,
                metrics: Arc::new(Metrics::new().unwrap()),
                clock: Arc::new(ManualClock::new(at(T0))),
                http: Default::default(),
                paper: PaperSettings::default(),
                strategies,
            },
            WorkerSettings {
                worker_id: id.to_string(),
                concurrency: 4,
                lock_ttl: Duration::from_secs(10),
                shutdown_deadline: Duration::from_secs(30),
                retry: RetryPolicy {
                    max_attempts: 20,
                    base_delay: Duration::from_millis(50),
                    max_delay: Duration::from_millis(200),
                },
                contention_delay: Duration::from_millis(100),
                candles: 60,
            },
        )
        .unwrap()
    }

    async fn subscription(&self, name: &str) -> subscription::Model {
        self.subscription_on(name, "paper").await
    }

    async fn subscription_on(&self, name: &str, exchange: &str) -> subscription::Model {
        self.subscription_with(name, exchange, json!({})).await
    }

    async fn subscription_with(
        &self,
        name: &str,
        exchange: &str,
        risk_config: serde_json::Value,
    ) -> subscription::Model {
        let store = self.store();
        let p = store.create_principal(name, at(T0)).await.unwrap();
        let bot = store
            .upsert_bot(
                &NewBot {
                    name: "always_buy".into(),
                    kind: BotKind::Technical,
                    strategy: "always_buy".into(),
                    default_config: json!({}),
                },
                at(T0),
            )
            .await
            .unwrap();
        store
            .create_subscription(
                &NewSubscription {
                    principal_id: p.id,
                    bot_id: bot.id,
                    exchange: exchange.into(),
                    symbol: "XRP/USDT:USDT".parse().unwrap(),
                    timeframes: vec![Timeframe::M5],
                    interval_seconds: 300,
                    leverage: dec!(5),
                    strategy_config: json!({}),
                    execution_config: json!({}),
                    risk_config,
                    testnet: false,
                    first_run_at: at(T0),
                },
                at(T0),
            )
            .await
            .unwrap()
    }

    /// `wins` closed winning trades, then `losses` newer losing ones, all before `T0`.
    async fn trade_history(&self, sub: i64, wins: i64, losses: i64) {
        for k in 0..wins + losses {
            let opened = at(T0 - 86_400 + k * 600);
            self.store()
                .insert_trade(&NewTrade {
                    subscription_id: sub,
                    run_id: None,
                    symbol: "XRP/USDT:USDT".parse().unwrap(),
                    side: PositionSide::Long,
                    quantity: dec!(10),
                    entry_price: dec!(1.1),
                    exit_price: Some(dec!(1.1)),
                    realized_pnl: if k < wins { dec!(2) } else { dec!(-1) },
                    fees: dec!(0.01),
                    opened_at: opened,
                    closed_at: Some(opened + chrono::Duration::minutes(5)),
                })
                .await
                .unwrap();
        }
    }

    /// Waits until no job is waiting, in flight or delayed.
    async fn wait_drained(&self) {
        wait_until("the queue to drain", || async {
            let d = self.queue.depth().await.unwrap();
            (d.waiting, d.in_flight, d.delayed) == (0, 0, 0)
        })
        .await;
    }

    async fn enqueue(&self, sub: i64, slot: i64) -> bool {
        let job = TradingCycle {
            subscription_id: sub,
            slot: at(slot),
            trigger: Trigger::Scheduled,
            trace_context: Default::default(),
        };
        self.queue
            .enqueue(&Envelope {
                id: job.job_id(),
                attempt: 1,
                payload: job.to_payload(),
            })
            .await
            .unwrap()
    }

    async fn runs(&self, status: Option<RunStatus>) -> Vec<tradefleet::store::cycle_run::Model> {
        self.store()
            .list_runs(&RunFilter {
                subscription_id: None,
                status,
                limit: 100_000,
            })
            .await
            .unwrap()
    }

    async fn close(self) {
        self.redis.close().await.ok();
        self.db.close().await;
    }
}

/// Workers running in the background until `stop`.
struct Running {
    stops: Vec<oneshot::Sender<()>>,
    handles: Vec<JoinHandle<()>>,
}

impl Running {
    fn start(workers: Vec<Worker>, queue: &StreamQueue) -> Self {
        let mut stops = Vec::new();
        let mut handles = Vec::new();
        for w in workers {
            let (tx, rx) = oneshot::channel::<()>();
            let queue = queue.clone();
            handles.push(tokio::spawn(async move {
                w.run(queue, async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            }));
            stops.push(tx);
        }
        Self { stops, handles }
    }

    async fn stop(self) {
        for s in self.stops {
            let _ = s.send(());
        }
        for h in self.handles {
            tokio::time::timeout(PATIENCE, h).await.unwrap().unwrap();
        }
    }
}

async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_run_every_slot_exactly_once() {
    const N: usize = 4;
    const M: i64 = 3;
    let f = Fleet::new().await;
    let mut subs = Vec::new();
    for i in 0..N {
        subs.push(f.subscription(&format!("p{i}")).await);
    }
    for k in 0..M {
        for s in &subs {
            assert!(f.enqueue(s.id, T0 + k * 300).await);
        }
    }
    let workers = vec![
        f.worker("w1").await,
        f.worker("w2").await,
        f.worker("w3").await,
    ];
    let running = Running::start(workers, &f.queue);
    let want = N * usize::try_from(M).unwrap();
    wait_until("every slot to succeed", || async {
        f.runs(Some(RunStatus::Succeeded)).await.len() == want
    })
    .await;
    // A duplicate job for a finished slot (a fresh job id, past the queue's dedupe) is a no-op.
    let dup = TradingCycle {
        subscription_id: subs[0].id,
        slot: at(T0),
        trigger: Trigger::Scheduled,
        trace_context: Default::default(),
    };
    let finished_before = f
        .store()
        .run_for_slot(subs[0].id, at(T0))
        .await
        .unwrap()
        .unwrap();
    assert!(
        f.queue
            .enqueue(&Envelope {
                id: "dup-1".into(),
                attempt: 1,
                payload: dup.to_payload(),
            })
            .await
            .unwrap()
    );
    // A malformed payload goes to the SQL dead letters; the workers keep running.
    assert!(
        f.queue
            .enqueue(&Envelope {
                id: "bad-1".into(),
                attempt: 1,
                payload: "{not json".into(),
            })
            .await
            .unwrap()
    );
    wait_until("the dead letter", || async {
        f.store()
            .list_dead_letters(None, 10)
            .await
            .unwrap()
            .iter()
            .any(|d| d.job_id.as_deref() == Some("bad-1"))
    })
    .await;
    f.wait_drained().await;
    // Still running: one more slot succeeds after the malformed job.
    assert!(f.enqueue(subs[1].id, T0 + M * 300).await);
    wait_until("the extra slot", || async {
        f.runs(Some(RunStatus::Succeeded)).await.len() == want + 1
    })
    .await;
    running.stop().await;

    let runs = f.runs(None).await;
    assert_eq!(runs.len(), want + 1, "no extra run rows");
    assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded));
    let mut keys: Vec<(i64, i64)> = runs
        .iter()
        .map(|r| (r.subscription_id, r.slot.timestamp()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), want + 1, "no duplicate slot");
    for s in &subs {
        for k in 0..M {
            assert!(
                keys.contains(&(s.id, T0 + k * 300)),
                "gap at sub {} slot {k}",
                s.id
            );
        }
        let orders = f.store().list_orders(s.id, 100).await.unwrap();
        assert!(!orders.is_empty(), "sub {} placed orders on PAPER", s.id);
        // The subscription's equity peak is the highest snapshot its cycles recorded.
        let snapshots = f.store().list_equity_snapshots(s.id, 100).await.unwrap();
        assert_eq!(
            snapshots.len(),
            usize::try_from(M).unwrap() + usize::from(s.id == subs[1].id)
        );
        let row = f.store().subscription(s.id).await.unwrap();
        assert_eq!(
            row.peak_equity.map(|p| p.get()),
            snapshots.iter().map(|x| x.equity.get()).max(),
            "sub {}",
            s.id
        );
    }
    let after = f
        .store()
        .run_for_slot(subs[0].id, at(T0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after, finished_before, "the duplicate changed nothing");
    // Each worker wrote its runs under increasing fencing tokens per subscription.
    for s in &subs {
        let tokens: Vec<i64> = runs
            .iter()
            .filter(|r| r.subscription_id == s.id)
            .map(|r| r.fencing_token.unwrap())
            .collect();
        let mut sorted = tokens.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), tokens.len(), "distinct fencing tokens");
    }
    f.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contended_job_is_retried_and_then_succeeds() {
    let f = Fleet::new().await;
    let sub = f.subscription("alice").await;
    let locks = f.locks().await;
    let held = locks
        .acquire(sub.id, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(f.enqueue(sub.id, T0).await);
    let running = Running::start(vec![f.worker("w1").await], &f.queue);
    wait_until("a retry to be scheduled", || async {
        f.queue.depth().await.unwrap().delayed > 0
    })
    .await;
    let run = f
        .store()
        .run_for_slot(sub.id, at(T0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        run.status,
        RunStatus::Enqueued,
        "contention leaves the run pending"
    );
    assert!(f.store().list_orders(sub.id, 10).await.unwrap().is_empty());
    held.release().await.unwrap();
    wait_until("the run to succeed", || async {
        f.runs(Some(RunStatus::Succeeded)).await.len() == 1
    })
    .await;
    running.stop().await;
    let run = f
        .store()
        .run_for_slot(sub.id, at(T0))
        .await
        .unwrap()
        .unwrap();
    assert!(run.attempt > 1, "ran on a later attempt: {}", run.attempt);
    f.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_contended_to_its_last_attempt_after_the_scheduler_moved_on_is_skipped() {
    let f = Fleet::new().await;
    let sub = f.subscription("erin").await;
    // The scheduler has enqueued a later slot (last_run_at = T0 + 600) while another
    // cycle still holds the lock: T0's job is superseded.
    assert!(
        f.store()
            .advance_schedule(sub.id, at(T0), at(T0 + 600), at(T0))
            .await
            .unwrap()
    );
    let store = f.store();
    let moved = store
        .advance_schedule(sub.id, at(T0 + 600), at(T0 + 900), at(T0))
        .await
        .unwrap();
    assert!(moved);
    let locks = f.locks().await;
    let held = locks
        .acquire(sub.id, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(f.enqueue(sub.id, T0).await);
    let running = Running::start(vec![f.worker("w1").await], &f.queue);
    // Early attempts are retried as any contention is (the holder may finish in time).
    wait_until("a retry to be scheduled", || async {
        f.queue.depth().await.unwrap().delayed > 0
    })
    .await;
    wait_until("the superseded run to be skipped", || async {
        f.runs(Some(RunStatus::Skipped)).await.len() == 1
    })
    .await;
    f.wait_drained().await;
    running.stop().await;
    let run = f
        .store()
        .run_for_slot(sub.id, at(T0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.attempt, 0, "never started: {run:?}");
    assert_eq!(run.status, RunStatus::Skipped);
    assert!(
        run.error.as_deref().unwrap_or("").starts_with("superseded"),
        "{run:?}"
    );
    assert!(f.store().list_orders(sub.id, 10).await.unwrap().is_empty());
    assert!(
        f.store()
            .list_dead_letters(None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    held.release().await.unwrap();
    f.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_subscriptions_are_dead_lettered_and_paused_ones_skipped() {
    let f = Fleet::new().await;
    // A real venue without vault keys cannot run: permanent, its run ends dead-lettered.
    let no_keys = f.subscription_on("dave", "binance").await;
    assert!(f.enqueue(no_keys.id, T0).await);
    let paused = f.subscription("carol").await;
    f.store()
        .pause_subscription(paused.id, Some("operator"), at(T0))
        .await
        .unwrap();
    assert!(f.enqueue(paused.id, T0).await);
    assert!(f.enqueue(999_999, T0).await);
    let running = Running::start(vec![f.worker("w1").await], &f.queue);
    wait_until("the dead letter", || async {
        f.store()
            .list_dead_letters(None, 10)
            .await
            .unwrap()
            .iter()
            .any(|d| d.job_id.as_deref() == Some("cycle:999999:1637107200"))
    })
    .await;
    f.wait_drained().await;
    running.stop().await;
    let letters = f.store().list_dead_letters(None, 10).await.unwrap();
    assert_eq!(
        letters.len(),
        2,
        "the unknown and the key-less subscriptions: {letters:?}"
    );
    for l in &letters {
        assert_eq!(l.attempts, 1, "permanent: not retried: {l:?}");
    }
    assert!(
        letters.iter().any(|l| l.error.contains("does not exist")),
        "{letters:?}"
    );
    assert!(
        letters.iter().any(|l| l.error.contains("no vault keys")),
        "{letters:?}"
    );
    let run = f
        .store()
        .run_for_slot(no_keys.id, at(T0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status, RunStatus::DeadLettered);
    assert!(run.error.unwrap().contains("no vault keys"));
    let run = f
        .store()
        .run_for_slot(paused.id, at(T0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status, RunStatus::Skipped);
    assert!(
        f.store()
            .list_orders(paused.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    f.close().await;
}

/// Buys, but first records a much newer fencing token for its subscription, as a worker that
/// took over mid-cycle would have.
#[derive(Debug)]
struct TakenOver {
    store: Store,
    subscription_id: i64,
}

impl Strategy for TakenOver {
    fn name(&self) -> &'static str {
        "taken_over"
    }
    fn validate(&self) -> Result<(), StrategyError> {
        Ok(())
    }
    fn generate(&self, view: &MarketView<'_>) -> Result<Signal, StrategyError> {
        let (store, id) = (self.store.clone(), self.subscription_id);
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(store.check_fencing_token(id, 1_000_000))
                .unwrap();
        });
        AlwaysBuy.generate(view)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_fencing_token_leaves_the_run_pending_without_results() {
    let f = Fleet::new().await;
    let sub = f.subscription("bob").await;
    let (store, id) = (f.store().clone(), sub.id);
    let worker = f
        .worker_with(
            "w1",
            Arc::new(move |_: &str, _: &serde_json::Value| {
                Ok(Box::new(TakenOver {
                    store: store.clone(),
                    subscription_id: id,
                }) as Box<dyn Strategy>)
            }),
        )
        .await;
    let job = TradingCycle {
        subscription_id: sub.id,
        slot: at(T0),
        trigger: Trigger::Scheduled,
        trace_context: Default::default(),
    };
    let info = JobInfo {
        job_id: job.job_id(),
        entry_id: "1-0".into(),
        attempt: 1,
        deliveries: 1,
        max_attempts: 5,
    };
    let err = worker.handle(&job, &info).await.unwrap_err();
    assert!(
        matches!(err, JobError::Store(StoreError::StaleFencingToken { .. })),
        "{err}"
    );
    assert!(err.is_retryable(), "a retry runs under a newer token");
    let run = f
        .store()
        .run_for_slot(sub.id, at(T0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status, RunStatus::Enqueued, "left for the retry");
    assert!(
        f.store().list_orders(sub.id, 10).await.unwrap().is_empty(),
        "no orders recorded"
    );
    assert!(
        f.store()
            .list_positions(sub.id, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        f.store()
            .subscription(sub.id)
            .await
            .unwrap()
            .last_fencing_token,
        Some(1_000_000)
    );

    // The retry (an ordinary strategy now) takes a token above the store's newest and succeeds.
    let worker = f.worker("w2").await;
    let info = JobInfo { attempt: 2, ..info };
    assert_eq!(
        worker.handle(&job, &info).await.unwrap(),
        JobOutcome::Succeeded
    );
    let run = f
        .store()
        .run_for_slot(sub.id, at(T0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.fencing_token, Some(1_000_001));
    assert!(!f.store().list_orders(sub.id, 10).await.unwrap().is_empty());
    // A duplicate delivery of the finished slot is a no-op.
    assert_eq!(
        worker.handle(&job, &info).await.unwrap(),
        JobOutcome::AlreadyDone(RunStatus::Succeeded)
    );
    f.close().await;
}

#[tokio::test]
async fn the_fencing_floor_survives_a_lost_counter() {
    let redis = TestRedis::new().await.unwrap();
    let locks = LockManager::connect(&RedisConfig {
        url: redis.url().to_string(),
        key_prefix: redis.prefix().to_string(),
        ..RedisConfig::default()
    })
    .await
    .unwrap();
    let ttl = Duration::from_secs(10);
    let g = locks.acquire(7, ttl).await.unwrap().unwrap();
    assert_eq!(g.fencing_token().get(), 1);
    g.release().await.unwrap();
    // The store committed 41 before Redis lost its data.
    let mut conn = redis.conn();
    redis::cmd("DEL")
        .arg(locks.fence_key(7))
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let g = locks.acquire_with_floor(7, ttl, 41).await.unwrap().unwrap();
    assert_eq!(g.fencing_token().get(), 42, "raised above the floor");
    assert!(
        locks.acquire_with_floor(7, ttl, 0).await.unwrap().is_none(),
        "still exclusive"
    );
    g.release().await.unwrap();
    // A floor below the counter changes nothing.
    let g = locks.acquire_with_floor(7, ttl, 5).await.unwrap().unwrap();
    assert_eq!(g.fencing_token().get(), 43);
    g.release().await.unwrap();
    redis.close().await.unwrap();
}

#[tokio::test]
async fn paper_accounts_in_redis_are_shared_between_processes() {
    use tradefleet::exchange::Exchange;
    use tradefleet::exchange::paper::{PaperExchange, PaperStore, RedisPaperStore, ReplaySource};
    let redis = TestRedis::new().await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let store = Arc::new(RedisPaperStore::new(conn, redis.prefix()));
    let venue = || {
        PaperExchange::with_parts(
            PaperSettings {
                account: "sub-1".into(),
                ..PaperSettings::default()
            },
            Arc::new(ManualClock::new(at(T0))),
            ReplaySource::bundled().unwrap(),
            store.clone(),
        )
        .unwrap()
    };
    // Two "processes": separate venue instances over one Redis store.
    let (a, b) = (venue(), venue());
    assert!(store.load("sub-1").await.unwrap().is_none());
    let symbol = "XRP/USDT:USDT".parse().unwrap();
    a.set_leverage(&symbol, 7).await.unwrap();
    let seen = b.state().await.unwrap();
    assert_eq!(seen.leverage.values().copied().collect::<Vec<_>>(), [7]);
    assert!(
        store.load("sub-2").await.unwrap().is_none(),
        "accounts are separate"
    );
    // Garbage under the key is a configuration error, never a panic.
    let mut c = redis.conn();
    redis::cmd("SET")
        .arg(store.key("sub-1"))
        .arg("not json")
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    assert!(b.state().await.is_err());
    redis.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_stop_writes_a_cycle_places_nothing_and_is_retried() {
    let f = Fleet::new().await;
    let sub = f.subscription("erin").await;
    let worker = f.worker("w1").await;
    worker.stop_writes();
    let job = TradingCycle {
        subscription_id: sub.id,
        slot: at(T0),
        trigger: Trigger::Scheduled,
        trace_context: Default::default(),
    };
    let info = JobInfo {
        job_id: job.job_id(),
        entry_id: "1-0".into(),
        attempt: 1,
        deliveries: 1,
        max_attempts: 5,
    };
    let err = worker.handle(&job, &info).await.unwrap_err();
    assert!(err.to_string().contains("shutting down"), "{err}");
    assert!(err.is_retryable());
    let run = f
        .store()
        .run_for_slot(sub.id, at(T0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status, RunStatus::Enqueued);
    assert!(f.store().list_orders(sub.id, 10).await.unwrap().is_empty());
    // The lock was released: another worker runs the retry at once.
    let other = f.worker("w2").await;
    let info = JobInfo { attempt: 2, ..info };
    assert_eq!(
        other.handle(&job, &info).await.unwrap(),
        JobOutcome::Succeeded
    );
    assert!(!f.store().list_orders(sub.id, 10).await.unwrap().is_empty());
    f.close().await;
}

/// The loss-streak breaker counts the newest closed trades (a non-Kelly subscription reads no
/// more of them than the limit): three losses on top of older wins pause a subscription whose
/// limit is 3; two do not. A Kelly-sized one still sizes from its whole history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loss_streak_breaker_and_kelly_read_the_trades_they_need() {
    let f = Fleet::new().await;
    let risk = json!({"max_consecutive_losses": 3, "daily_loss_limit_pct": "0",
                      "max_drawdown_pct": "0"});
    let streak = f.subscription_with("ann", "paper", risk.clone()).await;
    let calm = f.subscription_with("bob", "paper", risk.clone()).await;
    let mut kelly_risk = risk;
    kelly_risk["max_consecutive_losses"] = json!(0);
    kelly_risk["capital"] = json!({"sizing_method": "kelly", "kelly_min_trades": 20});
    let kelly = f.subscription_with("cat", "paper", kelly_risk).await;
    f.trade_history(streak.id, 20, 3).await;
    f.trade_history(calm.id, 20, 2).await;
    f.trade_history(kelly.id, 27, 3).await;
    for s in [&streak, &calm, &kelly] {
        assert!(f.enqueue(s.id, T0).await);
    }
    let running = Running::start(vec![f.worker("w1").await], &f.queue);
    f.wait_drained().await;
    running.stop().await;
    let runs = f.runs(None).await;
    let status_of = |sub: i64| {
        runs.iter()
            .find(|r| r.subscription_id == sub)
            .map(|r| r.status)
    };
    // A tripped breaker records its cycle as skipped.
    assert_eq!(status_of(streak.id), Some(RunStatus::Skipped), "{runs:#?}");
    assert_eq!(status_of(calm.id), Some(RunStatus::Succeeded), "{runs:#?}");
    assert_eq!(status_of(kelly.id), Some(RunStatus::Succeeded), "{runs:#?}");

    let paused = f.store().subscription(streak.id).await.unwrap();
    assert_eq!(paused.status, SubscriptionStatus::Paused);
    assert!(
        paused
            .status_reason
            .as_deref()
            .is_some_and(|r| r.contains("3 losing trades in a row")),
        "{:?}",
        paused.status_reason
    );
    assert!(
        f.store()
            .list_orders(streak.id, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let active = f.store().subscription(calm.id).await.unwrap();
    assert_eq!(active.status, SubscriptionStatus::Active);
    assert!(!f.store().list_orders(calm.id, 10).await.unwrap().is_empty());

    let run = f
        .store()
        .run_for_slot(kelly.id, at(T0))
        .await
        .unwrap()
        .unwrap();
    let reasons = run.analysis.unwrap()["sizing"]["reasons"].to_string();
    assert!(reasons.contains("over 30 trades"), "{reasons}");
    f.close().await;
}
