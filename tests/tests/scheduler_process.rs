//! The scheduler and `fleetctl cycle run` as processes: the binary enqueues due slots, answers
//! `/readyz` and stops cleanly on SIGTERM, giving its lease up; `fleetctl cycle run` puts a manual
//! job on the queue and `--wait` without a worker ends in a clean timeout.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use redis::AsyncCommands;
use rust_decimal_macros::dec;
use serde_json::json;
use tradefleet::domain::Timeframe;
use tradefleet::fleet::scheduler::LEADER_LEASE;
use tradefleet::queue::{TRADING_CYCLE_QUEUE, TradingCycle, Trigger};
use tradefleet::store::{BotKind, NewBot, NewSubscription, RunFilter, RunTrigger, Store};
use tradefleet_tests::{TestDb, TestRedis, workspace_bin};

async fn subscription(store: &Store, first: chrono::DateTime<Utc>) -> i64 {
    let now = Utc::now();
    let principal = store.create_principal("ann", now).await.unwrap();
    let bot = store
        .upsert_bot(
            &NewBot {
                name: "trend".into(),
                kind: BotKind::Technical,
                strategy: "rsi_bollinger".into(),
                default_config: json!({}),
            },
            now,
        )
        .await
        .unwrap();
    store
        .create_subscription(
            &NewSubscription {
                principal_id: principal.id,
                bot_id: bot.id,
                exchange: "paper".into(),
                symbol: "XRP/USDT:USDT".parse().unwrap(),
                timeframes: vec![Timeframe::M5],
                interval_seconds: 3_600,
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
        .unwrap()
        .id
}

async fn stream_jobs(redis: &TestRedis) -> Vec<TradingCycle> {
    let mut conn = redis.conn();
    let key = redis.key(&format!("queue:{TRADING_CYCLE_QUEUE}:stream"));
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(&key).await.unwrap();
    reply
        .ids
        .iter()
        .map(|e| TradingCycle::from_payload(&e.get::<String>("payload").unwrap()).unwrap())
        .collect()
}

fn env(cmd: &mut Command, db: &TestDb, redis: &TestRedis) {
    cmd.env_clear()
        .env("DATABASE_URL", db.url())
        .env("REDIS_URL", redis.url())
        .env("TRADEFLEET__REDIS__KEY_PREFIX", redis.prefix());
}

fn fleetctl(db: &TestDb, redis: &TestRedis, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(workspace_bin("fleetctl").unwrap());
    env(&mut cmd, db, redis);
    cmd.args(args).output().unwrap()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

#[tokio::test]
async fn fleetctl_cycle_run_enqueues_a_manual_job_and_wait_times_out_cleanly() {
    let db = TestDb::postgres().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    // Not due for a day: only the manual run exists.
    let id = subscription(db.store(), Utc::now() + chrono::Duration::days(1)).await;
    let id_arg = id.to_string();

    let out = fleetctl(
        &db,
        &redis,
        &["--json", "cycle", "run", "--subscription", &id_arg],
    );
    assert!(out.status.success(), "{out:?}");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["status"], "enqueued");
    assert_eq!(body["enqueued"], true);
    let jobs = stream_jobs(&redis).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].subscription_id, id);
    assert_eq!(jobs[0].trigger, Trigger::Manual);
    assert_eq!(body["job_id"], jobs[0].job_id());
    let runs = db
        .store()
        .list_runs(&RunFilter {
            subscription_id: Some(id),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].trigger, RunTrigger::Manual);
    assert_eq!(runs[0].slot, jobs[0].slot);
    assert_eq!(body["run_id"], runs[0].id);

    // No worker: --wait gives up after its timeout with a clear error and exit code 1.
    let out = fleetctl(
        &db,
        &redis,
        &[
            "--json",
            "cycle",
            "run",
            "--subscription",
            &id_arg,
            "--wait",
            "--timeout",
            "1s",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["error"]["kind"], "timeout");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("still enqueued")
    );

    // An unknown subscription is a usage error and enqueues nothing.
    let before = stream_jobs(&redis).await.len();
    let out = fleetctl(&db, &redis, &["cycle", "run", "--subscription", "999999"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(stream_jobs(&redis).await.len(), before);
    redis.close().await.unwrap();
    db.close().await;
}

#[tokio::test]
async fn the_scheduler_binary_enqueues_due_slots_and_stops_on_sigterm() {
    let db = TestDb::sqlite().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    let first = Utc.timestamp_opt(Utc::now().timestamp() - 10, 0).unwrap();
    let id = subscription(db.store(), first).await;
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cmd = Command::new(workspace_bin("scheduler").unwrap());
    env(&mut cmd, &db, &redis);
    let child = cmd
        .env("TRADEFLEET__SCHEDULER__TICK_MS", "100")
        .env("TRADEFLEET__SCHEDULER__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait (bounded) for the first tick to record and enqueue the due slot.
    let mut runs = Vec::new();
    for _ in 0..300 {
        runs = db.store().list_runs(&RunFilter::default()).await.unwrap();
        if !runs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(runs.len(), 1, "the scheduler never enqueued the due slot");
    assert_eq!((runs[0].subscription_id, runs[0].slot), (id, first));
    let jobs = stream_jobs(&redis).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].subscription_id, jobs[0].slot), (id, first));

    let ready = tokio::task::spawn_blocking(move || http_get(port, "/readyz"))
        .await
        .unwrap()
        .unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let metrics = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        metrics.contains("\ntradefleet_scheduler_leader 1\n"),
        "{metrics}"
    );

    let lease = redis.key(&format!("lock:sub:{{{LEADER_LEASE}}}"));
    let mut conn = redis.conn();
    assert!(conn.exists::<_, bool>(&lease).await.unwrap());
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        !conn.exists::<_, bool>(&lease).await.unwrap(),
        "the lease is given up on SIGTERM"
    );
    // Still one run and one job: later ticks found nothing due.
    assert_eq!(
        db.store()
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(stream_jobs(&redis).await.len(), 1);
    redis.close().await.unwrap();
    db.close().await;
}
