//! The `worker` binary as deployed: it becomes ready (`/readyz`), runs a queued PAPER cycle to a
//! succeeded run, and exits 0 on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rust_decimal_macros::dec;
use serde_json::json;
use tradefleet::domain::Timeframe;
use tradefleet::queue::{
    Envelope, QueueSettings, StreamQueue, TRADING_CYCLE_QUEUE, TradingCycle, Trigger,
};
use tradefleet::store::{BotKind, NewBot, NewSubscription, RunStatus};
use tradefleet_tests::fleet::terminate;
use tradefleet_tests::{TestDb, TestRedis, workspace_bin};

/// Only a failing test waits this long.
const PATIENCE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status code of `GET path`, or `None` when nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_a_cycle_and_stops_on_sigterm() {
    let db = TestDb::sqlite().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    let store = db.store();
    let now = Utc::now();
    let p = store.create_principal("alice", now).await.unwrap();
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
        .await
        .unwrap();
    let sub = store
        .create_subscription(
            &NewSubscription {
                principal_id: p.id,
                bot_id: bot.id,
                exchange: "paper".into(),
                symbol: "XRP/USDT:USDT".parse().unwrap(),
                timeframes: vec![Timeframe::M5],
                interval_seconds: 300,
                leverage: dec!(5),
                strategy_config: json!({}),
                execution_config: json!({}),
                risk_config: json!({}),
                testnet: false,
                first_run_at: now,
            },
            now,
        )
        .await
        .unwrap();

    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(workspace_bin("worker").unwrap())
        .env_clear()
        .current_dir(dir.path())
        .env("DATABASE_URL", db.url())
        .env("REDIS_URL", redis.url())
        .env("TRADEFLEET__VAULT__KEYS", tradefleet_tests::TEST_VAULT_KEYS)
        .env("TRADEFLEET__REDIS__KEY_PREFIX", redis.prefix())
        .env("TRADEFLEET__WORKER__LISTEN", format!("127.0.0.1:{port}"))
        .env("TRADEFLEET__WORKER__CONCURRENCY", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + PATIENCE;
    while http_status(port, "/readyz") != Some(200) {
        assert!(Instant::now() < deadline, "the worker never became ready");
        assert!(child.try_wait().unwrap().is_none(), "the worker exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(http_status(port, "/healthz"), Some(200));

    let queue = StreamQueue::connect(
        redis.url(),
        redis.prefix(),
        TRADING_CYCLE_QUEUE,
        QueueSettings::default(),
    )
    .await
    .unwrap();
    let job = TradingCycle {
        subscription_id: sub.id,
        slot: at(now.timestamp() - now.timestamp() % 300),
        trigger: Trigger::Scheduled,
        trace_context: Default::default(),
    };
    queue
        .enqueue(&Envelope {
            id: job.job_id(),
            attempt: 1,
            payload: job.to_payload(),
        })
        .await
        .unwrap();
    loop {
        let run = store.run_for_slot(sub.id, job.slot).await.unwrap();
        if run.as_ref().map(|r| r.status) == Some(RunStatus::Succeeded) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cycle never succeeded: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let exit = terminate(
        &mut child,
        deadline.saturating_duration_since(Instant::now()),
    )
    .await
    .expect("the worker exits on SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    redis.close().await.unwrap();
    db.close().await;
}
