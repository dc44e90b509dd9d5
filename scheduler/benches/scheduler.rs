//! How long one leader takes to enqueue 100,000 due subscriptions on local PostgreSQL + Redis
//! (the design target is under 2 s): one `Scheduler::tick` with the default batch size, timed
//! end to end, after the subscriptions are bulk-inserted. Run: `cargo bench -p
//! tradefleet-scheduler --bench scheduler` (needs the test PostgreSQL and Redis).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use sea_orm::ConnectionTrait;
use tradefleet::clock::{Clock, ManualClock};
use tradefleet::config::{RedisConfig, SchedulerConfig};
use tradefleet::domain::Timeframe;
use tradefleet::fleet::scheduler::{Scheduler, SchedulerSettings};
use tradefleet::lock::LockManager;
use tradefleet::queue::{QueueSettings, StreamQueue, TRADING_CYCLE_QUEUE};
use tradefleet::store::{BotKind, NewBot, NewSubscription, RunFilter};
use tradefleet_tests::procstat::{self, CpuOf};
use tradefleet_tests::{TestDb, TestRedis};

const SUBSCRIPTIONS: i64 = 100_000;

/// CPU seconds (user + system) so far of this process, of every `postgres` process and of every
/// `redis-server` process.
fn cpu_seconds() -> [f64; 3] {
    [
        procstat::cpu_seconds(CpuOf::Pid(std::process::id())),
        procstat::cpu_seconds(CpuOf::Comm("postgres")),
        procstat::cpu_seconds(CpuOf::Comm("redis-server")),
    ]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db = TestDb::postgres().await?;
    let redis = TestRedis::new().await?;
    let t0 = Utc
        .with_ymd_and_hms(2026, 11, 21, 8, 0, 0)
        .single()
        .unwrap_or_default();
    let store = db.store();
    let principal = store.create_principal("bench", t0).await?;
    let bot = store
        .upsert_bot(
            &NewBot {
                name: "bench".into(),
                kind: BotKind::Technical,
                strategy: "rsi_bollinger".into(),
                default_config: serde_json::json!({}),
            },
            t0,
        )
        .await?;
    store
        .create_subscription(
            &NewSubscription {
                principal_id: principal.id,
                bot_id: bot.id,
                exchange: "paper".into(),
                symbol: "XRP/USDT:USDT".parse()?,
                timeframes: vec![Timeframe::M5],
                interval_seconds: 3_600,
                leverage: Decimal::ONE,
                strategy_config: serde_json::json!({}),
                execution_config: serde_json::json!({}),
                risk_config: serde_json::json!({}),
                testnet: false,
                first_run_at: t0,
            },
            t0,
        )
        .await?;
    let cols = "principal_id, bot_id, exchange, symbol, timeframes, interval_seconds, leverage, \
                strategy_config, execution_config, risk_config, status, status_reason, \
                next_run_at, last_run_at, testnet, last_fencing_token, created_at, updated_at";
    db.conn()
        .execute_unprepared(&format!(
            "INSERT INTO subscriptions ({cols}) SELECT {cols} FROM subscriptions, \
             generate_series(1, {})",
            SUBSCRIPTIONS - 1
        ))
        .await?;
    db.conn().execute_unprepared("ANALYZE").await?;

    let redis_cfg = RedisConfig {
        url: redis.url().to_string(),
        key_prefix: redis.prefix().to_string(),
        response_timeout_ms: 10_000,
    };
    let queue = StreamQueue::connect(
        redis.url(),
        redis.prefix(),
        TRADING_CYCLE_QUEUE,
        QueueSettings::default(),
    )
    .await?;
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(t0 + chrono::Duration::seconds(1)));
    let mut config = SchedulerConfig::default();
    if let Some(n) = std::env::var("SCHEDULER_PARALLEL_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.parallel_batches = n;
    }
    if let Some(n) = std::env::var("SCHEDULER_BATCH_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.batch_size = n;
    }
    let mut scheduler = Scheduler::new(
        store.clone(),
        queue.clone(),
        LockManager::connect(&redis_cfg).await?,
        clock,
        SchedulerSettings::from_config(&config),
    )?;

    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let report = scheduler.tick().await?;
    let elapsed = started.elapsed();
    let cpu_after = cpu_seconds();

    let runs = store
        .list_runs(&RunFilter {
            limit: 200_000,
            ..RunFilter::default()
        })
        .await?
        .len();
    let depth = queue.depth().await?;
    println!(
        "scheduler: one tick enqueued {} of {} due subscriptions in {:.3} s \
         ({:.0} per second; {} runs recorded, {} jobs waiting; batch size {}, {} parallel \
         batches)",
        report.enqueued,
        report.due,
        elapsed.as_secs_f64(),
        report.enqueued as f64 / elapsed.as_secs_f64().max(1e-9),
        runs,
        depth.waiting,
        config.batch_size,
        config.parallel_batches,
    );
    println!(
        "scheduler: CPU during the tick: scheduler {:.2} s, postgres {:.2} s, redis {:.2} s \
         (postgres and redis machine-wide)",
        cpu_after[0] - cpu_before[0],
        cpu_after[1] - cpu_before[1],
        cpu_after[2] - cpu_before[2],
    );
    if elapsed > Duration::from_secs(2) {
        println!("scheduler: SLOWER than the 2 s design target");
    }
    // Where the time goes: the Redis share alone (the same number of jobs, another queue).
    let other = StreamQueue::connect(
        redis.url(),
        redis.prefix(),
        "bench-only",
        QueueSettings::default(),
    )
    .await?;
    let envelopes: Vec<tradefleet::queue::Envelope> = (0..SUBSCRIPTIONS)
        .map(|id| {
            tradefleet::fleet::scheduler::cycle_envelope(
                id,
                t0,
                tradefleet::queue::Trigger::Scheduled,
            )
        })
        .collect();
    let started = Instant::now();
    other.enqueue_many(&envelopes).await?;
    println!(
        "scheduler: of which Redis alone (enqueue_many of {SUBSCRIPTIONS} jobs): {:.3} s",
        started.elapsed().as_secs_f64()
    );
    scheduler.release().await?;
    redis.close().await?;
    db.close().await;
    Ok(())
}
