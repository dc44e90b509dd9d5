//! A running fleet for process tests: PAPER subscriptions in a test database, and the
//! `scheduler` and `worker` binaries spawned over it with their own ports and Redis prefix.
//! Children are killed when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::json;
use tradefleet::domain::Timeframe;
use tradefleet::store::{BotKind, NewBot, NewSubscription, Store};

use crate::{TEST_VAULT_KEYS, TestDb, TestRedis, workspace_bin};

/// Sends SIGTERM to `child` and waits up to `within` for it to exit; kills it and fails when it
/// does not.
pub async fn terminate(child: &mut Child, within: Duration) -> anyhow::Result<ExitStatus> {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .context("running kill -TERM")?;
    if !sent.success() {
        bail!("kill -TERM {} failed: {sent}", child.id());
    }
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("process {} outlived {within:?} after SIGTERM", child.id());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `GET path` over HTTP/1.0 (so the body is never chunked): `(status, body)`, or `None` when
/// nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Percent-encoding of a query-string value (RFC 3986 unreserved characters pass).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `rsi_bollinger` configs that open a position on the bundled PAPER data whatever its last
/// candles look like: with bands of almost no width and thresholds at the extremes, the first
/// buys when the close is under its 20-candle mean, the second sells when it is over it.
pub fn trading_configs() -> [serde_json::Value; 2] {
    [
        json!({"oversold": 99.0, "overbought": 99.5, "bb_deviations": 0.0001}),
        json!({"oversold": 0.5, "overbought": 1.0, "bb_deviations": 0.0001}),
    ]
}

/// One active PAPER subscription (XRP/USDT, 5m, the `rsi_bollinger` bot) per strategy config,
/// due 10 s ago, every `interval_seconds`. Returns their ids.
pub async fn paper_subscriptions(
    store: &Store,
    strategy_configs: &[serde_json::Value],
    interval_seconds: i64,
) -> anyhow::Result<Vec<i64>> {
    let now = Utc::now();
    let principal = store.create_principal("observer", now).await?;
    let bot = store
        .upsert_bot(
            &NewBot {
                name: "rsi_bollinger".into(),
                kind: BotKind::Technical,
                strategy: "rsi_bollinger".into(),
                default_config: json!({}),
            },
            now,
        )
        .await?;
    let mut ids = Vec::with_capacity(strategy_configs.len());
    for config in strategy_configs {
        let sub = store
            .create_subscription(
                &NewSubscription {
                    principal_id: principal.id,
                    bot_id: bot.id,
                    exchange: "paper".into(),
                    symbol: "XRP/USDT:USDT".parse()?,
                    timeframes: vec![Timeframe::M5],
                    interval_seconds,
                    leverage: Decimal::from(2),
                    strategy_config: config.clone(),
                    execution_config: json!({}),
                    risk_config: json!({}),
                    testnet: false,
                    first_run_at: now - chrono::Duration::seconds(10),
                },
                now,
            )
            .await?;
        ids.push(sub.id);
    }
    Ok(ids)
}

/// A spawned binary, killed on drop.
#[derive(Debug)]
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
    /// Its `/metrics` port.
    pub port: u16,
}

impl Proc {
    /// Fails when the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early: {status}", self.name);
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base_command(
    bin: &str,
    db: &TestDb,
    redis: &TestRedis,
    extra_env: &[(&str, String)],
) -> anyhow::Result<Command> {
    let mut cmd = Command::new(workspace_bin(bin)?);
    cmd.env_clear()
        .env("DATABASE_URL", db.url())
        .env("REDIS_URL", redis.url())
        .env("TRADEFLEET__REDIS__KEY_PREFIX", redis.prefix())
        .env("TRADEFLEET__VAULT__KEYS", TEST_VAULT_KEYS)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Ok(cmd)
}

/// The `scheduler` binary ticking every 200 ms, serving `/metrics` on a free port.
pub fn spawn_scheduler(
    db: &TestDb,
    redis: &TestRedis,
    extra_env: &[(&str, String)],
) -> anyhow::Result<Proc> {
    let port = free_port()?;
    let child = base_command("scheduler", db, redis, extra_env)?
        .env("TRADEFLEET__SCHEDULER__TICK_MS", "200")
        .env("TRADEFLEET__SCHEDULER__LISTEN", format!("127.0.0.1:{port}"))
        .spawn()
        .context("spawning the scheduler")?;
    Ok(Proc {
        name: "scheduler",
        child,
        port,
    })
}

/// A `worker` binary running two cycles at once, serving `/metrics` on a free port.
pub fn spawn_worker(
    db: &TestDb,
    redis: &TestRedis,
    extra_env: &[(&str, String)],
) -> anyhow::Result<Proc> {
    let port = free_port()?;
    let child = base_command("worker", db, redis, extra_env)?
        .env("TRADEFLEET__WORKER__LISTEN", format!("127.0.0.1:{port}"))
        .env("TRADEFLEET__WORKER__CONCURRENCY", "2")
        .spawn()
        .context("spawning the worker")?;
    Ok(Proc {
        name: "worker",
        child,
        port,
    })
}
