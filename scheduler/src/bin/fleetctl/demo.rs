//! `fleetctl demo`: a whole fleet on one machine in about a minute. A SQLite database in a temp
//! dir, Redis (the reachable `REDIS_URL` under a key prefix of its own, else a private
//! `redis-server` child), an ephemeral vault key, a demo principal with PAPER subscriptions over the
//! bundled XRP/USDT 5m market, and the real `scheduler` plus two `worker` processes on a replay
//! clock; then a summary per subscription and checks (one run per slot, no dead letters).
//! Children run in their own process group and are stopped (SIGTERM, then SIGKILL) on every path.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use clap::Args;
use rust_decimal::Decimal;
use sea_orm::EntityTrait;
use sea_orm_migration::MigratorTrait;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tradefleet::clock::{Clock, ReplayClock};
use tradefleet::config::DatabaseConfig;
use tradefleet::domain::Timeframe;
use tradefleet::store::{
    BotKind, NewBot, NewSubscription, PositionStatus, RunStatus, Store, cycle_run, dead_letter,
    order, position, trade,
};
use tradefleet_migrations::Migrator;

use crate::Globals;
use crate::context::parse_duration;
use crate::output::{CliError, CliResult, print_json, print_table};

/// Exit code when Redis is unreachable and `redis-server` cannot be started.
pub(crate) const EXIT_NO_REDIS: u8 = 3;

/// Simulated time at the start of the demo: late enough that 200 closed 15m candles (the
/// cycle's window) exist in the bundled data, which begins 2021-11-15T00:00:00Z.
const REPLAY_START: &str = "2021-11-17T12:00:00Z";
/// The bundled data's last 5m candle closes at 2021-11-21T22:35:00Z; the demo stops before.
const DATA_END: &str = "2021-11-21T22:30:00Z";
/// 20 simulated minutes per wall second: the default minute covers 20 hours of market.
const DEFAULT_SPEED: u32 = 1_200;
/// Wall time the children get to start before simulated time begins.
const STARTUP_GRACE: StdDuration = StdDuration::from_millis(2_000);
const PROGRESS_EVERY: StdDuration = StdDuration::from_secs(3);
const READY_TIMEOUT: StdDuration = StdDuration::from_secs(30);
const STOP_TIMEOUT: StdDuration = StdDuration::from_secs(20);
const WORKERS: usize = 2;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// PAPER subscriptions to create (strategies, timeframes and intervals are mixed).
    #[arg(long, default_value_t = 4)]
    subscriptions: u32,
    /// Wall time the fleet runs (e.g. 30s, 2m).
    #[arg(long, default_value = "60s")]
    duration: String,
    /// Simulated seconds per wall second.
    #[arg(long, default_value_t = DEFAULT_SPEED)]
    speed: u32,
    /// Run until Ctrl-C (or the end of the bundled data) instead of --duration.
    #[arg(long)]
    follow: bool,
    /// Keep the demo directory (database, logs) and print its path.
    #[arg(long)]
    keep: bool,
}

/// One demo subscription's shape.
struct Plan {
    strategy: &'static str,
    timeframes: &'static [Timeframe],
    interval_seconds: i64,
    strategy_config: serde_json::Value,
}

fn plans(n: u32) -> Vec<Plan> {
    let mtf = || json!({"trend_timeframe": "15m", "entry_timeframe": "5m"});
    (0..n)
        .map(|i| match i % 4 {
            0 => Plan {
                strategy: "rsi_bollinger",
                timeframes: &[Timeframe::M5],
                interval_seconds: 300,
                strategy_config: json!({}),
            },
            1 => Plan {
                strategy: "mtf_trend",
                timeframes: &[Timeframe::M5, Timeframe::M15],
                interval_seconds: 300,
                strategy_config: mtf(),
            },
            2 => Plan {
                strategy: "rsi_bollinger",
                timeframes: &[Timeframe::M15],
                interval_seconds: 900,
                strategy_config: json!({}),
            },
            _ => Plan {
                strategy: "mtf_trend",
                timeframes: &[Timeframe::M5, Timeframe::M15],
                interval_seconds: 900,
                strategy_config: mtf(),
            },
        })
        .collect()
}

/// The processes the demo started; whatever is still running when this is dropped is killed.
#[derive(Debug, Default)]
struct Children {
    procs: Vec<(String, Child)>,
}

impl Children {
    fn add(&mut self, name: impl Into<String>, child: Child) {
        self.procs.push((name.into(), child));
    }

    /// The first child that has exited, with its status.
    fn exited(&mut self) -> Option<(String, std::process::ExitStatus)> {
        for (name, child) in &mut self.procs {
            if let Ok(Some(status)) = child.try_wait() {
                return Some((name.clone(), status));
            }
        }
        None
    }

    /// SIGTERM to the children whose name starts with `prefix`, then wait (SIGKILL after
    /// `STOP_TIMEOUT`). Returns each one's name and whether it exited 0 by itself.
    async fn stop(&mut self, prefix: &str) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let (stopping, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.procs)
            .into_iter()
            .partition(|(n, _)| n.starts_with(prefix));
        self.procs = rest;
        for (_, child) in &stopping {
            terminate(child.id());
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for (name, mut child) in stopping {
            let ok = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break status.success(),
                    Ok(None) if Instant::now() < deadline => {
                        tokio::time::sleep(StdDuration::from_millis(50)).await;
                    }
                    _ => {
                        eprintln!("{name} did not stop after SIGTERM; killing it");
                        child.kill().ok();
                        child.wait().ok();
                        break false;
                    }
                }
            };
            out.push((name, ok));
        }
        out
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.procs {
            if matches!(child.try_wait(), Ok(None)) {
                child.kill().ok();
            }
            child.wait().ok();
        }
    }
}

/// SIGTERM without unsafe code: the `kill` utility.
fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// SIGINT or SIGTERM to fleetctl itself, listened to from the start so a Ctrl-C during set-up
/// also goes through the clean-up.
struct Interrupt {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Interrupt {
    fn new() -> Result<Self, CliError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let err = |e: std::io::Error| CliError::failure("signal", e.to_string());
            Ok(Self {
                int: signal(SignalKind::interrupt()).map_err(err)?,
                term: signal(SignalKind::terminate()).map_err(err)?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn interrupted() -> CliError {
    CliError::failure(
        "interrupted",
        "interrupted during set-up; everything was stopped",
    )
}

fn free_port() -> Result<u16, CliError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| CliError::failure("io", format!("cannot find a free port: {e}")))
}

fn parse_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The scheduler and worker binaries next to this fleetctl.
fn sibling(name: &str) -> Result<PathBuf, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failure("io", format!("cannot locate fleetctl itself: {e}")))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        return Err(CliError::failure(
            "missing_binary",
            format!(
                "the `{name}` binary is not next to fleetctl in {}; run scripts/demo.sh, which \
                 builds the scheduler, worker and migrations binaries before the demo",
                dir.display()
            ),
        ));
    }
    Ok(path)
}

async fn redis_ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let attempt = async {
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(StdDuration::from_secs(2), attempt).await,
        Ok(Some(_))
    )
}

/// Deletes every key under `prefix`.
async fn delete_prefixed(url: &str, prefix: &str) -> Result<u64, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{prefix}:*");
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            deleted += redis::cmd("DEL")
                .arg(&keys)
                .query_async::<u64>(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// `GET /readyz` answered 200.
async fn ready(port: u16) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).await.ok()?;
        text.split_whitespace().nth(1).map(|c| c == "200")
    };
    matches!(
        tokio::time::timeout(StdDuration::from_secs(2), attempt).await,
        Ok(Some(true))
    )
}

fn log_file(dir: &Path, name: &str) -> Result<(std::fs::File, std::fs::File), CliError> {
    let path = dir.join(format!("{name}.log"));
    let f = std::fs::File::create(&path)
        .map_err(|e| CliError::failure("io", format!("cannot create {}: {e}", path.display())))?;
    let g = f
        .try_clone()
        .map_err(|e| CliError::failure("io", e.to_string()))?;
    Ok((f, g))
}

fn spawn(
    children: &mut Children,
    name: &str,
    program: &Path,
    args: &[&str],
    env: &[(String, String)],
    dir: &Path,
) -> Result<(), CliError> {
    let (out, err) = log_file(dir, name)?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    #[cfg(unix)]
    {
        // Its own process group: a terminal's Ctrl-C reaches fleetctl only, which then stops
        // the children in order.
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let child = cmd.spawn().map_err(|e| {
        CliError::failure(
            "spawn",
            format!("cannot start {name} ({}): {e}", program.display()),
        )
    })?;
    children.add(name, child);
    Ok(())
}

/// Where the demo's Redis is and whose it is.
struct DemoRedis {
    url: String,
    private: bool,
}

async fn demo_redis(
    children: &mut Children,
    dir: &Path,
    interrupt: &mut Interrupt,
) -> Result<DemoRedis, CliError> {
    let url = std::env::var("REDIS_URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_string());
    if redis_ping(&url).await {
        return Ok(DemoRedis {
            url,
            private: false,
        });
    }
    let shown = tradefleet::store::redact_url(&url);
    let Some(server) = find_on_path("redis-server") else {
        return Err(CliError {
            kind: "redis_unavailable".into(),
            message: format!(
                "Redis is not reachable at {shown} and redis-server is not on PATH. Install \
                 Redis (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install \
                 redis) or set REDIS_URL to a reachable server, then run the demo again."
            ),
            code: EXIT_NO_REDIS,
        });
    };
    let port = free_port()?;
    eprintln!(
        "Redis is not reachable at {shown}; starting a private redis-server on 127.0.0.1:{port}"
    );
    let port_s = port.to_string();
    let dir_s = dir.display().to_string();
    spawn(
        children,
        "redis-server",
        &server,
        &[
            "--port",
            &port_s,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir_s,
        ],
        &[],
        dir,
    )?;
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if redis_ping(&url).await {
            return Ok(DemoRedis { url, private: true });
        }
        if let Some((_, status)) = children.exited() {
            return Err(CliError::failure(
                "redis",
                format!(
                    "the private redis-server exited ({status}); see {}",
                    dir.join("redis-server.log").display()
                ),
            ));
        }
        if Instant::now() > deadline {
            return Err(CliError::failure(
                "redis",
                "the private redis-server did not answer within 30 s",
            ));
        }
        tokio::select! {
            _ = interrupt.recv() => return Err(interrupted()),
            _ = tokio::time::sleep(StdDuration::from_millis(100)) => {}
        }
    }
}

/// Creates the demo principal, bots and subscriptions. Returns the subscriptions with their plan.
async fn seed(
    store: &Store,
    n: u32,
    start: DateTime<Utc>,
) -> Result<Vec<(i64, &'static str, String, i64)>, CliError> {
    let now = Utc::now();
    let principal = store.create_principal("demo", now).await?;
    let mut bots = HashMap::new();
    let mut out = Vec::new();
    for plan in plans(n) {
        let bot_id = match bots.get(plan.strategy) {
            Some(id) => *id,
            None => {
                let bot = store
                    .upsert_bot(
                        &NewBot {
                            name: plan.strategy.to_string(),
                            kind: BotKind::Technical,
                            strategy: plan.strategy.to_string(),
                            default_config: json!({}),
                        },
                        now,
                    )
                    .await?;
                bots.insert(plan.strategy, bot.id);
                bot.id
            }
        };
        let sub = store
            .create_subscription(
                &NewSubscription {
                    principal_id: principal.id,
                    bot_id,
                    exchange: "paper".into(),
                    symbol: tradefleet::exchange::paper::BUNDLED_SYMBOL
                        .parse()
                        .map_err(|e| CliError::failure("demo", format!("{e}")))?,
                    timeframes: plan.timeframes.to_vec(),
                    interval_seconds: plan.interval_seconds,
                    leverage: Decimal::from(3),
                    strategy_config: plan.strategy_config.clone(),
                    execution_config: json!({}),
                    risk_config: json!({}),
                    testnet: false,
                    first_run_at: start,
                },
                now,
            )
            .await?;
        let tfs = plan
            .timeframes
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(",");
        out.push((sub.id, plan.strategy, tfs, plan.interval_seconds));
    }
    Ok(out)
}

#[derive(Debug, Serialize)]
struct SubSummary {
    id: i64,
    strategy: &'static str,
    timeframes: String,
    interval: String,
    /// Runs that succeeded (one per slot).
    cycles: u64,
    failed: u64,
    skipped: u64,
    /// Cycles whose signal was not HOLD.
    signals: u64,
    orders: u64,
    /// Closed trades.
    trades: u64,
    open_positions: u64,
    realized_pnl: Decimal,
}

#[derive(Debug, Serialize)]
struct Totals {
    cycles: u64,
    failed: u64,
    skipped: u64,
    signals: u64,
    orders: u64,
    trades: u64,
    open_positions: u64,
    realized_pnl: Decimal,
    /// Runs enqueued or running when the fleet stopped (their slots were not run).
    unfinished_runs: u64,
}

#[derive(Debug, Serialize)]
struct DuplicateRun {
    subscription_id: i64,
    slot: DateTime<Utc>,
    runs: u64,
}

#[derive(Debug, Serialize)]
struct Checks {
    duplicate_runs: Vec<DuplicateRun>,
    dead_letters: u64,
    /// Every child exited 0 after SIGTERM.
    clean_exit: bool,
    ok: bool,
}

#[derive(Debug, Serialize)]
struct Summary {
    dir: String,
    kept: bool,
    redis: &'static str,
    redis_prefix: String,
    speed: u32,
    replay_start: DateTime<Utc>,
    simulated_end: DateTime<Utc>,
    wall_seconds: f64,
    subscriptions: Vec<SubSummary>,
    totals: Totals,
    checks: Checks,
}

/// Counts from the database for the progress line.
async fn progress(store: &Store) -> Result<(u64, u64, u64, u64), CliError> {
    let runs = cycle_run::Entity::find().all(store.connection()).await?;
    let finished = runs.iter().filter(|r| r.status.is_terminal()).count() as u64;
    let failed = runs
        .iter()
        .filter(|r| matches!(r.status, RunStatus::Failed | RunStatus::DeadLettered))
        .count() as u64;
    let orders = order::Entity::find().all(store.connection()).await?.len() as u64;
    let open = position::Entity::find()
        .all(store.connection())
        .await?
        .iter()
        .filter(|p| p.status == PositionStatus::Open)
        .count() as u64;
    Ok((finished, failed, orders, open))
}

impl From<sea_orm::DbErr> for CliError {
    fn from(e: sea_orm::DbErr) -> Self {
        CliError::failure("database", e.to_string())
    }
}

async fn summarise(
    store: &Store,
    subs: &[(i64, &'static str, String, i64)],
) -> Result<(Vec<SubSummary>, Totals, Vec<DuplicateRun>, u64), CliError> {
    let conn = store.connection();
    let runs = cycle_run::Entity::find().all(conn).await?;
    let orders = order::Entity::find().all(conn).await?;
    let trades = trade::Entity::find().all(conn).await?;
    let positions = position::Entity::find().all(conn).await?;
    let dead = dead_letter::Entity::find().all(conn).await?.len() as u64;

    let mut per_slot: BTreeMap<(i64, DateTime<Utc>), u64> = BTreeMap::new();
    for r in &runs {
        *per_slot.entry((r.subscription_id, r.slot)).or_default() += 1;
    }
    let duplicates = per_slot
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((subscription_id, slot), runs)| DuplicateRun {
            subscription_id,
            slot,
            runs,
        })
        .collect();
    let mut out = Vec::new();
    for (id, strategy, tfs, interval) in subs {
        let mine = runs.iter().filter(|r| r.subscription_id == *id);
        let count = |s: RunStatus| mine.clone().filter(|r| r.status == s).count() as u64;
        let closed: Vec<&trade::Model> = trades
            .iter()
            .filter(|t| t.subscription_id == *id && t.status == PositionStatus::Closed)
            .collect();
        out.push(SubSummary {
            id: *id,
            strategy,
            timeframes: tfs.clone(),
            interval: format!("{}m", interval / 60),
            cycles: count(RunStatus::Succeeded),
            failed: count(RunStatus::Failed) + count(RunStatus::DeadLettered),
            skipped: count(RunStatus::Skipped),
            signals: mine
                .clone()
                .filter(|r| r.status == RunStatus::Succeeded)
                .filter(|r| r.signal.as_deref().is_some_and(|s| s != "HOLD"))
                .count() as u64,
            orders: orders.iter().filter(|o| o.subscription_id == *id).count() as u64,
            trades: closed.len() as u64,
            open_positions: positions
                .iter()
                .filter(|p| p.subscription_id == *id && p.status == PositionStatus::Open)
                .count() as u64,
            realized_pnl: closed.iter().map(|t| t.realized_pnl.get()).sum(),
        });
    }
    let totals = Totals {
        cycles: out.iter().map(|s| s.cycles).sum(),
        failed: out.iter().map(|s| s.failed).sum(),
        skipped: out.iter().map(|s| s.skipped).sum(),
        signals: out.iter().map(|s| s.signals).sum(),
        orders: out.iter().map(|s| s.orders).sum(),
        trades: out.iter().map(|s| s.trades).sum(),
        open_positions: out.iter().map(|s| s.open_positions).sum(),
        realized_pnl: out.iter().map(|s| s.realized_pnl).sum(),
        unfinished_runs: runs
            .iter()
            .filter(|r| matches!(r.status, RunStatus::Enqueued | RunStatus::Running))
            .count() as u64,
    };
    Ok((out, totals, duplicates, dead))
}

fn print_summary(s: &Summary) {
    println!(
        "tradefleet demo: {} subscriptions on PAPER XRP/USDT:USDT, {} -> {} simulated ({}x) in \
         {:.0} s",
        s.subscriptions.len(),
        s.replay_start.format("%Y-%m-%d %H:%M"),
        s.simulated_end.format("%Y-%m-%d %H:%M"),
        s.speed,
        s.wall_seconds
    );
    println!();
    let mut rows: Vec<Vec<String>> = s
        .subscriptions
        .iter()
        .map(|x| {
            vec![
                x.id.to_string(),
                x.strategy.to_string(),
                x.timeframes.clone(),
                x.interval.clone(),
                x.cycles.to_string(),
                x.failed.to_string(),
                x.signals.to_string(),
                x.orders.to_string(),
                x.trades.to_string(),
                x.open_positions.to_string(),
                x.realized_pnl.round_dp(4).normalize().to_string(),
            ]
        })
        .collect();
    let t = &s.totals;
    rows.push(vec![
        "total".into(),
        String::new(),
        String::new(),
        String::new(),
        t.cycles.to_string(),
        t.failed.to_string(),
        t.signals.to_string(),
        t.orders.to_string(),
        t.trades.to_string(),
        t.open_positions.to_string(),
        t.realized_pnl.round_dp(4).normalize().to_string(),
    ]);
    print_table(
        &[
            "SUB",
            "STRATEGY",
            "TIMEFRAMES",
            "EVERY",
            "CYCLES",
            "FAILED",
            "SIGNALS",
            "ORDERS",
            "TRADES",
            "OPEN",
            "PNL_USDT",
        ],
        &rows,
    );
    println!();
    let c = &s.checks;
    println!(
        "checks: {} duplicate (subscription, slot) runs, {} dead letters, {} unfinished runs at \
         stop, children {}",
        c.duplicate_runs.len(),
        c.dead_letters,
        t.unfinished_runs,
        if c.clean_exit {
            "exited 0"
        } else {
            "did NOT all exit 0"
        }
    );
    for d in &c.duplicate_runs {
        println!(
            "  duplicate: subscription {} slot {} has {} runs",
            d.subscription_id,
            d.slot.to_rfc3339(),
            d.runs
        );
    }
    println!(
        "{}",
        if c.ok {
            "all checks passed"
        } else {
            "CHECKS FAILED"
        }
    );
}

pub(crate) async fn run(globals: &Globals, a: DemoArgs) -> CliResult {
    if a.subscriptions == 0 || a.subscriptions > 64 {
        return Err(CliError::usage("--subscriptions must be 1..=64"));
    }
    if a.speed == 0 || a.speed > tradefleet::clock::MAX_REPLAY_SPEED {
        return Err(CliError::usage(format!(
            "--speed must be 1..={}",
            tradefleet::clock::MAX_REPLAY_SPEED
        )));
    }
    let duration = parse_duration("--duration", &a.duration)?;
    if duration < Duration::seconds(1) {
        return Err(CliError::usage("--duration must be at least 1s"));
    }
    let start = parse_time(REPLAY_START);
    let data_end = parse_time(DATA_END);
    let sim_span = duration
        .checked_mul(i32::try_from(a.speed).unwrap_or(i32::MAX))
        .unwrap_or(Duration::MAX);
    if !a.follow
        && start
            .checked_add_signed(sim_span)
            .is_none_or(|e| e > data_end)
    {
        let max_wall = (data_end - start).num_seconds() / i64::from(a.speed);
        return Err(CliError::usage(format!(
            "--duration {} at --speed {} runs past the end of the bundled market data ({DATA_END}); \
             at this speed the longest run is {max_wall}s",
            a.duration, a.speed
        )));
    }
    let scheduler_bin = sibling("scheduler")?;
    let worker_bin = sibling("worker")?;
    let mut interrupt = Interrupt::new()?;

    let dir = tempfile::Builder::new()
        .prefix("tradefleet-demo-")
        .tempdir()
        .map_err(|e| CliError::failure("io", format!("cannot create a temp dir: {e}")))?;
    let dir_path = dir.path().to_path_buf();
    // Dropped before `dir`: every child is gone before the directory is removed.
    let mut children = Children::default();
    let result = fleet(
        globals,
        &a,
        &dir_path,
        &mut children,
        &mut interrupt,
        start,
        data_end,
        duration,
        (&scheduler_bin, &worker_bin),
    )
    .await;
    // Error paths: nothing may outlive fleetctl.
    children.stop("").await;
    drop(children);
    if a.keep {
        let kept = dir.keep();
        eprintln!("kept the demo directory: {}", kept.display());
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn fleet(
    globals: &Globals,
    a: &DemoArgs,
    dir: &Path,
    children: &mut Children,
    interrupt: &mut Interrupt,
    start: DateTime<Utc>,
    data_end: DateTime<Utc>,
    duration: Duration,
    (scheduler_bin, worker_bin): (&Path, &Path),
) -> CliResult {
    let redis = demo_redis(children, dir, interrupt).await?;
    let prefix = format!(
        "tf_demo_{}_{}",
        std::process::id(),
        Utc::now().timestamp_subsec_micros()
    );
    if !redis.private {
        eprintln!(
            "using Redis at {} under the key prefix {prefix}",
            tradefleet::store::redact_url(&redis.url)
        );
    }
    let outcome = fleet_on_redis(
        globals,
        a,
        dir,
        children,
        interrupt,
        start,
        data_end,
        duration,
        (scheduler_bin, worker_bin),
        &redis,
        &prefix,
    )
    .await;
    if !redis.private {
        // Stop the fleet first so nothing writes the keys again.
        children.stop("").await;
        if let Err(e) = delete_prefixed(&redis.url, &prefix).await {
            eprintln!("warning: could not delete the demo's Redis keys ({prefix}:*): {e}");
        }
    }
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn fleet_on_redis(
    globals: &Globals,
    a: &DemoArgs,
    dir: &Path,
    children: &mut Children,
    interrupt: &mut Interrupt,
    start: DateTime<Utc>,
    data_end: DateTime<Utc>,
    duration: Duration,
    (scheduler_bin, worker_bin): (&Path, &Path),
    redis: &DemoRedis,
    prefix: &str,
) -> CliResult {
    let db_url = format!("sqlite://{}?mode=rwc", dir.join("demo.sqlite").display());
    let store = tradefleet::store::connect_config(&DatabaseConfig {
        url: db_url.clone(),
        max_connections: 2,
        ..DatabaseConfig::default()
    })
    .await?;
    Migrator::up(store.connection(), None)
        .await
        .map_err(|e| CliError::failure("migration", format!("migrating: {e}")))?;
    let vault_key = tradefleet::vault::generate_key_string("demo")
        .map_err(|e| CliError::failure("vault", e.to_string()))?;
    eprintln!("using an ephemeral vault key; nothing is kept");
    let subs = seed(&store, a.subscriptions, start).await?;
    eprintln!(
        "created principal \"demo\" with {} PAPER subscriptions on XRP/USDT:USDT (bundled 5m \
         data, Nov 15-21 2021)",
        subs.len()
    );

    let origin =
        Utc::now() + Duration::from_std(STARTUP_GRACE).unwrap_or_else(|_| Duration::seconds(2));
    let origin_s = origin.to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut common: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), db_url.clone()),
        ("REDIS_URL".into(), redis.url.clone()),
        ("TRADEFLEET__REDIS__KEY_PREFIX".into(), prefix.to_string()),
        (
            "TRADEFLEET__VAULT__KEYS".into(),
            vault_key.expose_secret().to_string(),
        ),
        ("TRADEFLEET__CLOCK__MODE".into(), "replay".into()),
        (
            "TRADEFLEET__CLOCK__REPLAY_START".into(),
            REPLAY_START.into(),
        ),
        ("TRADEFLEET__CLOCK__REPLAY_ORIGIN".into(), origin_s),
        (
            "TRADEFLEET__CLOCK__REPLAY_SPEED".into(),
            a.speed.to_string(),
        ),
        ("TRADEFLEET__DATABASE__MAX_CONNECTIONS".into(), "4".into()),
    ];
    if let Ok(level) = std::env::var("RUST_LOG") {
        common.push(("TRADEFLEET__TELEMETRY__LOG_LEVEL".into(), level));
    }
    // A tick well inside the shortest interval at this speed, so no slot is skipped.
    let tick_ms = (300_000 / u64::from(a.speed) / 3).clamp(20, 1_000);
    let mut ports = Vec::new();
    let port = free_port()?;
    ports.push(("scheduler".to_string(), port));
    let mut env = common.clone();
    env.push((
        "TRADEFLEET__SCHEDULER__LISTEN".into(),
        format!("127.0.0.1:{port}"),
    ));
    env.push(("TRADEFLEET__SCHEDULER__TICK_MS".into(), tick_ms.to_string()));
    spawn(children, "scheduler", scheduler_bin, &[], &env, dir)?;
    for i in 1..=WORKERS {
        let name = format!("worker-{i}");
        let port = free_port()?;
        ports.push((name.clone(), port));
        let mut env = common.clone();
        env.push((
            "TRADEFLEET__WORKER__LISTEN".into(),
            format!("127.0.0.1:{port}"),
        ));
        env.push(("TRADEFLEET__WORKER__ID".into(), format!("demo-{name}")));
        env.push(("TRADEFLEET__WORKER__CONCURRENCY".into(), "4".into()));
        env.push((
            "TRADEFLEET__WORKER__SHUTDOWN_DEADLINE_MS".into(),
            "5000".into(),
        ));
        spawn(children, &name, worker_bin, &[], &env, dir)?;
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    for (name, port) in &ports {
        loop {
            if ready(*port).await {
                break;
            }
            if let Some((who, status)) = children.exited() {
                return Err(CliError::failure(
                    "child_exited",
                    format!(
                        "{who} exited during start-up ({status}); see {}",
                        dir.join(format!("{who}.log")).display()
                    ),
                ));
            }
            if Instant::now() > deadline {
                return Err(CliError::failure(
                    "child_not_ready",
                    format!(
                        "{name} was not ready within 30 s; see {}",
                        dir.join(format!("{name}.log")).display()
                    ),
                ));
            }
            tokio::select! {
                _ = interrupt.recv() => return Err(interrupted()),
                _ = tokio::time::sleep(StdDuration::from_millis(100)) => {}
            }
        }
    }
    eprintln!(
        "started scheduler and {WORKERS} workers (logs in {}); replaying from {} at {}x{}",
        dir.display(),
        REPLAY_START,
        a.speed,
        if a.follow {
            ", Ctrl-C to stop".to_string()
        } else {
            format!(" for {}", a.duration)
        }
    );

    let clock =
        ReplayClock::new(start, origin, a.speed).map_err(|e| CliError::usage(e.to_string()))?;
    let wall_end = if a.follow {
        None
    } else {
        Some(origin + duration)
    };
    let began = Instant::now();
    let mut crashed = None;
    let mut next_progress = tokio::time::Instant::now() + PROGRESS_EVERY;
    loop {
        let now = Utc::now();
        if wall_end.is_some_and(|end| now >= end) {
            break;
        }
        if clock.now() >= data_end {
            eprintln!("reached the end of the bundled market data; stopping");
            break;
        }
        if let Some(exited) = children.exited() {
            crashed = Some(exited);
            break;
        }
        if tokio::time::Instant::now() >= next_progress {
            next_progress += PROGRESS_EVERY;
            match progress(&store).await {
                Ok((finished, failed, orders, open)) => eprintln!(
                    "[sim {}] runs finished {finished} ({failed} failed), orders {orders}, open \
                     positions {open}",
                    clock.now().format("%Y-%m-%d %H:%M")
                ),
                Err(e) => eprintln!("progress unavailable: {}", e.message),
            }
        }
        tokio::select! {
            _ = interrupt.recv() => {
                eprintln!("interrupted; stopping the fleet");
                break;
            }
            _ = tokio::time::sleep(StdDuration::from_millis(200)) => {}
        }
    }
    let simulated_end = clock.now().min(data_end);
    eprintln!("stopping: SIGTERM to the scheduler, then the workers");
    let mut stopped = children.stop("scheduler").await;
    stopped.extend(children.stop("worker").await);
    let wall_seconds = began.elapsed().as_secs_f64();
    let clean_exit = crashed.is_none() && stopped.iter().all(|(_, ok)| *ok);
    for (name, ok) in &stopped {
        if !ok {
            eprintln!(
                "{name} did not exit 0; see {}",
                dir.join(format!("{name}.log")).display()
            );
        }
    }
    if let Some((name, status)) = &crashed {
        eprintln!(
            "{name} exited early ({status}); see {}",
            dir.join(format!("{name}.log")).display()
        );
    }

    let (subscriptions, totals, duplicate_runs, dead_letters) = summarise(&store, &subs).await?;
    store.close().await.ok();
    let ok = duplicate_runs.is_empty() && dead_letters == 0 && clean_exit;
    let summary = Summary {
        dir: dir.display().to_string(),
        kept: a.keep,
        redis: if redis.private { "private" } else { "shared" },
        redis_prefix: prefix.to_string(),
        speed: a.speed,
        replay_start: start,
        simulated_end,
        wall_seconds,
        subscriptions,
        totals,
        checks: Checks {
            duplicate_runs,
            dead_letters,
            clean_exit,
            ok,
        },
    };
    if globals.json {
        print_json(&summary)?;
    } else {
        print_summary(&summary);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
