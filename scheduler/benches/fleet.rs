//! Fleet benchmarks against the local PostgreSQL and Redis, with the real release `worker` and
//! `scheduler` binaries on the PAPER exchange (bundled 2021 XRP data, wall clock: the replay has
//! ended, so the market is frozen at its last close and every cycle still crawls 200 closed 5m
//! candles, computes the indicators and asks `rsi_bollinger` for a signal).
//!
//! Measures, and prints as a table:
//! - sustained cycles per second with 1 and with 2 worker processes (jobs pre-enqueued; the rate
//!   is succeeded runs / (last `finished_at` - first `started_at`), read from `cycle_runs`);
//! - lateness (`started_at - slot`) p50/p99 with the scheduler binary and 2 workers running
//!   `FLEET_LATENESS_SUBS` subscriptions (default 10,000) every minute, for two slots;
//! - lock acquire + release p50/p99 (one task, 10,000 round trips, release profile);
//! - worker RSS (`VmRSS` of `/proc/PID/status`) idle after start-up and the peak sampled under
//!   load, plus `VmHWM`.
//!
//! Run: `cargo bench -p tradefleet-scheduler --bench fleet` (builds the release binaries on first
//! use). The bench creates its own database and Redis key prefix and removes both at the end.
//! Environment knobs: `FLEET_SUBS` (subscriptions, default 10,000), `FLEET_JOBS` (jobs per
//! throughput round, default 3,000), `FLEET_ROUNDS` (rounds per worker count, default 3; the
//! median is reported), `FLEET_CONCURRENCY` (per worker, default the config's 32),
//! `FLEET_TRADE_HISTORY` (closed trades seeded for each subscription of the throughput rounds,
//! default 0; Kelly sizing and the loss-streak breaker read the newest 1,000 every cycle),
//! `FLEET_SKIP_LATENESS=1` (skip the two-minute lateness run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, TimeZone, Timelike, Utc};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tradefleet::config::RedisConfig;
use tradefleet::domain::Timeframe;
use tradefleet::lock::LockManager;
use tradefleet::queue::{
    Envelope, QueueSettings, StreamQueue, TRADING_CYCLE_QUEUE, TradingCycle, Trigger,
};
use tradefleet::store::{BotKind, NewBot, NewSubscription};
use tradefleet_tests::procstat::{CpuOf, cpu_seconds};
use tradefleet_tests::{TEST_VAULT_KEYS, TestDb, TestRedis, workspace_bin};

/// Only a broken run waits this long for a round to finish.
const PATIENCE: Duration = Duration::from_secs(600);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// `VmRSS` and `VmHWM` of `pid`, in MiB.
fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU ms per cycle of the workers, PostgreSQL and Redis over a round of `n` cycles.
struct CpuShare {
    pids: Vec<u32>,
    start: [f64; 3],
}

impl CpuShare {
    fn sample(pids: &[u32]) -> [f64; 3] {
        [
            pids.iter().map(|p| cpu_seconds(CpuOf::Pid(*p))).sum(),
            cpu_seconds(CpuOf::Comm("postgres")),
            cpu_seconds(CpuOf::Comm("redis-server")),
        ]
    }

    fn start(pids: &[u32]) -> Self {
        Self {
            pids: pids.to_vec(),
            start: Self::sample(pids),
        }
    }

    fn per_cycle(&self, n: i64) -> String {
        let end = Self::sample(&self.pids);
        let ms = |i: usize| (end[i] - self.start[i]) * 1000.0 / n.max(1) as f64;
        format!(
            "CPU per cycle: workers {:.2} ms, postgres {:.2} ms, redis {:.2} ms \
             (postgres and redis machine-wide)",
            ms(0),
            ms(1),
            ms(2)
        )
    }
}

/// A spawned fleet binary, stopped with SIGTERM (then killed) on drop.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("fleet: {} ignored SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Fleet<'a> {
    db: &'a TestDb,
    redis: &'a TestRedis,
    dir: &'a Path,
}

impl Fleet<'_> {
    fn command(&self, bin: &str, port: u16) -> anyhow::Result<Command> {
        let mut cmd = Command::new(workspace_bin(bin)?);
        cmd.env_clear()
            .current_dir(self.dir)
            .env("DATABASE_URL", self.db.url())
            .env("REDIS_URL", self.redis.url())
            .env("TRADEFLEET__VAULT__KEYS", TEST_VAULT_KEYS)
            .env("TRADEFLEET__REDIS__KEY_PREFIX", self.redis.prefix())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let section = if bin == "worker" {
            "WORKER"
        } else {
            "SCHEDULER"
        };
        cmd.env(
            format!("TRADEFLEET__{section}__LISTEN"),
            format!("127.0.0.1:{port}"),
        );
        if bin == "worker"
            && let Ok(c) = std::env::var("FLEET_CONCURRENCY")
        {
            cmd.env("TRADEFLEET__WORKER__CONCURRENCY", c);
        }
        Ok(cmd)
    }

    /// Start `bin` and wait until its `/readyz` answers 200.
    async fn start(&self, bin: &'static str) -> anyhow::Result<Proc> {
        let port = free_port();
        let child = self
            .command(bin, port)?
            .spawn()
            .with_context(|| format!("spawning {bin}"))?;
        let mut proc = Proc { child, name: bin };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http_ok(port, "/readyz").await {
                return Ok(proc);
            }
            if let Some(exit) = proc.child.try_wait()? {
                bail!("{bin} exited during start-up: {exit}");
            }
            if Instant::now() > deadline {
                proc.stop();
                bail!("{bin} never became ready");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn http_ok(port: u16, path: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut text = String::new();
    if tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut text))
        .await
        .is_err()
    {
        return false;
    }
    text.split_whitespace().nth(1) == Some("200")
}

async fn scalar_i64(conn: &DatabaseConnection, sql: String) -> anyhow::Result<i64> {
    let row = conn
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .context("no row")?;
    Ok(row.try_get_by_index::<Option<i64>>(0)?.unwrap_or(0))
}

async fn scalar_f64(conn: &DatabaseConnection, sql: String) -> anyhow::Result<f64> {
    let row = conn
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .context("no row")?;
    Ok(row.try_get_by_index::<Option<f64>>(0)?.unwrap_or(f64::NAN))
}

fn sql_ts(t: DateTime<Utc>) -> String {
    format!("'{}'::timestamptz", t.format("%Y-%m-%d %H:%M:%S%.6f+00"))
}

/// Peak RSS sampled every 200 ms while `fut` runs.
async fn sampling_rss<T>(
    pids: &[u32],
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, f64)> {
    let pids = pids.to_vec();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(async move {
        let mut peak = 0.0f64;
        loop {
            for pid in &pids {
                if let Some((rss, _)) = rss_mib(*pid) {
                    peak = peak.max(rss);
                }
            }
            tokio::select! {
                _ = &mut stop_rx => return peak,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    });
    let out = fut.await;
    let _ = stop_tx.send(());
    let peak = sampler.await.unwrap_or(0.0);
    Ok((out?, peak))
}

/// Enqueue one job per subscription id in `ids` at `slot`, wait until every run of `slot` has
/// finished, and return (succeeded, other, cycles per second).
async fn round(
    conn: &DatabaseConnection,
    queue: &StreamQueue,
    ids: &[i64],
    slot: DateTime<Utc>,
) -> anyhow::Result<(i64, i64, f64)> {
    let envelopes: Vec<Envelope> = ids
        .iter()
        .map(|id| {
            let job = TradingCycle {
                subscription_id: *id,
                slot,
                trigger: Trigger::Scheduled,
                trace_context: Default::default(),
            };
            Envelope {
                id: job.job_id(),
                attempt: 1,
                payload: job.to_payload(),
            }
        })
        .collect();
    // The run rows first, as the scheduler writes them with its enqueue (a worker only creates
    // a run for a job nobody recorded: a manual one or a lost row).
    let id_list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    conn.execute_unprepared(&format!(
        "INSERT INTO cycle_runs (subscription_id, slot, \"trigger\", status, attempt, enqueued_at) \
         SELECT id, {slot}, 'scheduled', 'enqueued', 0, now() FROM subscriptions \
         WHERE id IN ({id_list}) ON CONFLICT (subscription_id, slot) DO NOTHING",
        slot = sql_ts(slot)
    ))
    .await?;
    queue.enqueue_many(&envelopes).await?;
    let expected = ids.len() as i64;
    let deadline = Instant::now() + PATIENCE;
    let (ok, other) = loop {
        let ok = scalar_i64(
            conn,
            format!(
                "SELECT count(*) FROM cycle_runs WHERE slot = {} AND status = 'succeeded'",
                sql_ts(slot)
            ),
        )
        .await?;
        let other = scalar_i64(
            conn,
            format!(
                "SELECT count(*) FROM cycle_runs WHERE slot = {} \
                 AND status IN ('failed', 'dead_lettered', 'skipped')",
                sql_ts(slot)
            ),
        )
        .await?;
        if ok + other >= expected {
            break (ok, other);
        }
        if Instant::now() > deadline {
            bail!("round at {slot}: only {ok} of {expected} runs succeeded ({other} did not)");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let span = scalar_f64(
        conn,
        format!(
            "SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8 \
             FROM cycle_runs WHERE slot = {} AND status = 'succeeded'",
            sql_ts(slot)
        ),
    )
    .await?;
    Ok((ok, other, ok as f64 / span.max(1e-9)))
}

/// Rounds at `slots`, one after the other: (succeeded, other, "median X/s (a-b over n rounds)").
async fn rounds(
    conn: &DatabaseConnection,
    queue: &StreamQueue,
    ids: &[i64],
    slots: impl Iterator<Item = DateTime<Utc>>,
) -> anyhow::Result<(i64, i64, String)> {
    let (mut ok, mut other, mut rates) = (0, 0, Vec::new());
    for slot in slots {
        let (o, x, rate) = round(conn, queue, ids, slot).await?;
        ok += o;
        other += x;
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    let Some(median) = rates.get(rates.len() / 2) else {
        bail!("no round ran");
    };
    Ok((
        ok,
        other,
        format!(
            "median {median:.0}/s ({:.0}-{:.0}/s over {} rounds)",
            rates[0],
            rates[rates.len() - 1],
            rates.len()
        ),
    ))
}

async fn lateness(conn: &DatabaseConnection, from: DateTime<Utc>) -> anyhow::Result<(f64, f64)> {
    let q = |p: f64| {
        format!(
            "SELECT (percentile_disc({p}) WITHIN GROUP \
             (ORDER BY extract(epoch FROM started_at - slot)))::float8 \
             FROM cycle_runs WHERE slot >= {} AND status = 'succeeded'",
            sql_ts(from)
        )
    };
    Ok((
        scalar_f64(conn, q(0.5)).await?,
        scalar_f64(conn, q(0.99)).await?,
    ))
}

/// Lock acquire + release round trips: (p50, p99) in microseconds.
async fn lock_latency(redis: &TestRedis, n: usize) -> anyhow::Result<(f64, f64)> {
    let locks = LockManager::connect(&RedisConfig {
        url: redis.url().to_string(),
        key_prefix: format!("{}:lockbench", redis.prefix()),
        response_timeout_ms: 5_000,
    })
    .await?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        let guard = locks
            .acquire(i % 100, Duration::from_secs(30))
            .await?
            .context("a free lock was contended")?;
        guard.release().await?;
        if i >= n / 10 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    Ok((at(0.5), at(0.99)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let subs = env_usize("FLEET_SUBS", 10_000).max(1);
    let jobs = env_usize("FLEET_JOBS", 3_000).clamp(1, subs);
    let lateness_subs = env_usize("FLEET_LATENESS_SUBS", 10_000).clamp(1, subs);
    // The release binaries first, so their build is not timed.
    workspace_bin("worker")?;
    let db = TestDb::postgres().await?;
    let redis = TestRedis::new().await?;
    let dir = tempfile::tempdir()?;
    let result = run(&db, &redis, dir.path(), subs, jobs, lateness_subs).await;
    redis.close().await.ok();
    db.close().await;
    let rows = result?;
    println!();
    println!("| measure | result |");
    println!("|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    Ok(())
}

async fn run(
    db: &TestDb,
    redis: &TestRedis,
    dir: &Path,
    subs: usize,
    jobs: usize,
    lateness_subs: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let per_phase = i64::try_from(env_usize("FLEET_ROUNDS", 3).max(1)).unwrap_or(3);
    let mut rows = Vec::new();
    let (p50, p99) = lock_latency(redis, 10_000).await?;
    rows.push((
        "lock acquire + release (10,000, one task)".to_string(),
        format!("p50 {p50:.0} µs, p99 {p99:.0} µs"),
    ));
    println!("fleet: lock acquire+release p50 {p50:.0} µs, p99 {p99:.0} µs");

    // Subscriptions: one made through the store, the rest copied in SQL. Never due on their
    // own (next run in 2100) until the lateness run moves them.
    let store = db.store();
    let t0 = Utc::now();
    let never = Utc
        .with_ymd_and_hms(2100, 1, 1, 0, 0, 0)
        .single()
        .context("date")?;
    let principal = store.create_principal("bench", t0).await?;
    let bot = store
        .upsert_bot(
            &NewBot {
                name: "rsi_bollinger".into(),
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
                interval_seconds: 60,
                leverage: Decimal::from(5),
                strategy_config: serde_json::json!({}),
                execution_config: serde_json::json!({}),
                risk_config: serde_json::json!({}),
                testnet: false,
                first_run_at: never,
            },
            t0,
        )
        .await?;
    // Many users: one principal per subscription (the cycle reads the principal's other
    // subscriptions' open positions for the exposure limit).
    db.conn()
        .execute_unprepared(&format!(
            "INSERT INTO principals (name, created_at) SELECT 'bench-' || g, now() \
             FROM generate_series(2, {subs}) AS g"
        ))
        .await?;
    let cols = "bot_id, exchange, symbol, timeframes, interval_seconds, leverage, \
                strategy_config, execution_config, risk_config, status, status_reason, \
                next_run_at, last_run_at, testnet, last_fencing_token, created_at, updated_at";
    db.conn()
        .execute_unprepared(&format!(
            "INSERT INTO subscriptions (principal_id, {cols}) SELECT p.id, {} \
             FROM subscriptions s, principals p WHERE p.name LIKE 'bench-%' ORDER BY p.id",
            cols.split(", ")
                .map(|c| format!("s.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .await?;
    // Mature subscriptions: `FLEET_TRADE_HISTORY` closed trades each (for the ones the
    // throughput rounds run), alternating wins and losses, all older than the bench.
    let history = env_usize("FLEET_TRADE_HISTORY", 0);
    if history > 0 {
        let started = Instant::now();
        db.conn()
            .execute_unprepared(&format!(
                "INSERT INTO trades (subscription_id, symbol, side, quantity, entry_price, \
                 exit_price, realized_pnl, fees, status, opened_at, closed_at) \
                 SELECT s.id, s.symbol, 'long', 10, 0.5, 0.51, \
                 CASE WHEN g % 3 = 0 THEN -0.07 ELSE 0.1 END, 0.002, 'closed', \
                 now() - interval '30 days' + g * interval '1 minute', \
                 now() - interval '30 days' + g * interval '1 minute' + interval '30 seconds' \
                 FROM subscriptions s, generate_series(1, {history}) AS g WHERE s.id <= {jobs}"
            ))
            .await?;
        // As autovacuum would (hint bits, visibility map), and a checkpoint, so the bulk
        // insert's dirty pages and WAL are not written back during the measured rounds.
        db.conn()
            .execute_unprepared("VACUUM ANALYZE trades")
            .await?;
        if let Err(e) = db.conn().execute_unprepared("CHECKPOINT").await {
            println!("fleet: no CHECKPOINT after seeding ({e}); the first round pays for it");
        }
        println!(
            "fleet: {history} closed trades for each of {jobs} subscriptions in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    db.conn().execute_unprepared("ANALYZE").await?;
    let ids: Vec<i64> = (1..=subs as i64).collect();
    let queue = StreamQueue::connect(
        redis.url(),
        redis.prefix(),
        TRADING_CYCLE_QUEUE,
        QueueSettings::default(),
    )
    .await?;
    let fleet = Fleet { db, redis, dir };
    // Slots of the throughput rounds: whole minutes in the past, one per round.
    let base = t0
        .with_second(0)
        .unwrap_or(t0)
        .with_nanosecond(0)
        .unwrap_or(t0)
        - chrono::Duration::hours(1);
    let slot = |k: i64| base + chrono::Duration::minutes(k);

    // One worker: idle RSS, a warm-up round over every subscription (PAPER accounts and the
    // candle cache are created on first use), then the measured round.
    let mut w1 = fleet.start("worker").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle, _) = rss_mib(w1.pid()).context("reading the worker's RSS")?;
    println!("fleet: worker idle RSS {idle:.1} MiB");
    let (warm, other, warm_rate) = round(db.conn(), &queue, &ids, slot(0)).await?;
    println!(
        "fleet: warm-up round (first cycle of each subscription), 1 worker: {warm} succeeded, \
         {other} not, {warm_rate:.0}/s"
    );
    // Fresh statistics, as autovacuum would gather on a production server (this machine's
    // PostgreSQL runs with `autovacuum = off`). Without them the plans the workers prepared
    // while the tables were empty stay sequential scans.
    db.conn().execute_unprepared("ANALYZE").await?;
    // Each measured phase runs `rounds_per_phase` rounds (fresh slots) and reports their median:
    // one round is a few seconds, and a shared machine's noise moves single rounds a lot.
    let cpu = CpuShare::start(&[w1.pid()]);
    let ((ok1, other1, rate1), peak1) = sampling_rss(
        &[w1.pid()],
        rounds(db.conn(), &queue, &ids[..jobs], (1..=per_phase).map(slot)),
    )
    .await?;
    let cpu1 = cpu.per_cycle(ok1);
    println!(
        "fleet: 1 worker: {ok1} cycles ({other1} not succeeded) at {rate1}; peak RSS {peak1:.1} MiB; {cpu1}"
    );
    // Two workers.
    let mut w2 = fleet.start("worker").await?;
    let cpu = CpuShare::start(&[w1.pid(), w2.pid()]);
    let ((ok2, other2, rate2), peak2) = sampling_rss(
        &[w1.pid(), w2.pid()],
        rounds(
            db.conn(),
            &queue,
            &ids[..jobs],
            (per_phase + 1..=2 * per_phase).map(slot),
        ),
    )
    .await?;
    let cpu2 = cpu.per_cycle(ok2);
    println!(
        "fleet: 2 workers: {ok2} cycles ({other2} not succeeded) at {rate2}; peak RSS {peak2:.1} MiB; {cpu2}"
    );
    let hwm = [w1.pid(), w2.pid()]
        .iter()
        .filter_map(|p| rss_mib(*p).map(|r| r.1))
        .fold(0.0, f64::max);
    rows.push((
        "worker RSS idle (VmRSS after start-up)".into(),
        format!("{idle:.1} MiB"),
    ));
    rows.push((
        "worker RSS under load (peak VmRSS sampled / VmHWM)".into(),
        format!("{:.1} MiB / {hwm:.1} MiB", peak1.max(peak2)),
    ));
    rows.push((
        format!("cycles/s, 1 worker ({jobs} jobs pre-enqueued per round)"),
        format!("{rate1} ({other1} not succeeded); {cpu1}"),
    ));
    rows.push((
        format!("cycles/s, 2 workers ({jobs} jobs pre-enqueued per round)"),
        format!("{rate2} ({other2} not succeeded); {cpu2}"),
    ));

    if std::env::var("FLEET_SKIP_LATENESS").is_ok_and(|v| v == "1") {
        w1.stop();
        w2.stop();
        return Ok(rows);
    }
    // Lateness: the scheduler binary and both workers, `lateness_subs` subscriptions every
    // minute from the next whole minute, for two slots.
    let now = Utc::now();
    let first = now
        .with_second(0)
        .unwrap_or(now)
        .with_nanosecond(0)
        .unwrap_or(now)
        + chrono::Duration::minutes(1);
    db.conn()
        .execute_unprepared(&format!(
            "UPDATE subscriptions SET next_run_at = {} WHERE id <= {lateness_subs}",
            sql_ts(first)
        ))
        .await?;
    let mut scheduler = fleet.start("scheduler").await?;
    let wait_until = first + chrono::Duration::minutes(1);
    let expected = 2 * lateness_subs as i64;
    println!(
        "fleet: lateness run: {lateness_subs} subscriptions every minute, slots {first} and {wait_until}"
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        let done = scalar_i64(
            db.conn(),
            format!(
                "SELECT count(*) FROM cycle_runs WHERE slot >= {} \
                 AND status IN ('succeeded', 'failed', 'dead_lettered', 'skipped')",
                sql_ts(first)
            ),
        )
        .await?;
        if done >= expected {
            break;
        }
        if Instant::now() > deadline {
            bail!("lateness run: only {done} of {expected} runs finished");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    scheduler.stop();
    let (p50, p99) = lateness(db.conn(), first).await?;
    println!("fleet: lateness p50 {p50:.2} s, p99 {p99:.2} s");
    rows.push((
        format!("lateness (start - slot), {lateness_subs} subs every minute, 2 workers, 2 slots"),
        format!("p50 {p50:.2} s, p99 {p99:.2} s"),
    ));
    w1.stop();
    w2.stop();
    Ok(rows)
}
