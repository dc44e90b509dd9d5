//! `fleetctl dlq` as a process against the store and a Redis key prefix of its own: list, retry
//! (the job back on the trading-cycle queue under a fresh id, its run re-armed, the dead letter
//! gone) and purge.
#![allow(clippy::unwrap_used)]

mod support;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use support::Fleet;
use tradefleet::queue::{QueueSettings, StreamQueue, TRADING_CYCLE_QUEUE, TradingCycle, Trigger};
use tradefleet::store::{NewDeadLetter, NewRun, RunOutcome, RunStatus, RunTrigger};
use tradefleet_tests::{TestDb, TestRedis};

async fn seed(fleet: &Fleet, slot: DateTime<Utc>) -> TradingCycle {
    let store = fleet.db().store();
    let now = Utc::now();
    let alice = store.create_principal("alice", now).await.unwrap();
    let bot = store
        .upsert_bot(
            &tradefleet::store::NewBot {
                name: "rsi_bollinger".into(),
                kind: tradefleet::store::BotKind::Technical,
                strategy: "rsi_bollinger".into(),
                default_config: serde_json::json!({}),
            },
            now,
        )
        .await
        .unwrap();
    let sub = store
        .create_subscription(
            &tradefleet::store::NewSubscription {
                principal_id: alice.id,
                bot_id: bot.id,
                exchange: "paper".into(),
                symbol: "XRP/USDT:USDT".parse().unwrap(),
                timeframes: vec![tradefleet::domain::Timeframe::H1],
                interval_seconds: 3600,
                leverage: Decimal::ONE,
                strategy_config: serde_json::json!({}),
                execution_config: serde_json::json!({}),
                risk_config: serde_json::json!({}),
                testnet: false,
                first_run_at: now,
            },
            now,
        )
        .await
        .unwrap();
    let run = store
        .insert_run(&NewRun {
            subscription_id: sub.id,
            slot,
            trigger: RunTrigger::Scheduled,
            enqueued_at: now,
        })
        .await
        .unwrap()
        .into_run();
    store
        .finish_run(
            run.id,
            &RunOutcome {
                status: RunStatus::DeadLettered,
                signal: None,
                confidence: None,
                analysis: None,
                error: Some("venue down".into()),
            },
            now,
        )
        .await
        .unwrap();
    TradingCycle {
        subscription_id: sub.id,
        slot,
        trigger: Trigger::Scheduled,
        trace_context: Default::default(),
    }
}

async fn dead_letter(fleet: &Fleet, queue: &str, payload: &str, job_id: &str, age: Duration) {
    fleet
        .db()
        .store()
        .insert_dead_letter(
            &NewDeadLetter {
                queue: queue.into(),
                job_id: Some(job_id.into()),
                payload: payload.into(),
                error: "venue down".into(),
                attempts: 5,
            },
            Utc::now() - age,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_puts_the_job_back_under_a_fresh_id() {
    let redis = TestRedis::new().await.unwrap();
    let fleet = Fleet::with_db(TestDb::sqlite().await.unwrap()).await;
    let slot = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let job = seed(&fleet, slot).await;
    let payload = job.to_payload();
    dead_letter(
        &fleet,
        TRADING_CYCLE_QUEUE,
        &payload,
        &job.job_id(),
        Duration::zero(),
    )
    .await;
    dead_letter(
        &fleet,
        TRADING_CYCLE_QUEUE,
        &payload,
        &job.job_id(),
        Duration::zero(),
    )
    .await;
    dead_letter(
        &fleet,
        TRADING_CYCLE_QUEUE,
        "{not json",
        "cycle:x",
        Duration::zero(),
    )
    .await;
    dead_letter(&fleet, "emails", &payload, "mail:1", Duration::zero()).await;
    let (url, prefix) = (redis.url().to_string(), redis.prefix().to_string());
    let fleet = tokio::task::spawn_blocking(move || {
        let cmd = |args: &[&str]| {
            let mut c = fleet.cmd(args);
            c.env("REDIS_URL", &url)
                .env("TRADEFLEET__REDIS__KEY_PREFIX", &prefix);
            c
        };
        let v = fleet.json(&["dlq", "list"]);
        assert_eq!(v.as_array().unwrap().len(), 4);
        assert_eq!(v[3]["job_id"], "cycle:1:1700000000");
        let out = cmd(&["dlq", "retry", "1", "--json"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let first: Value = serde_json::from_slice(&out).unwrap();
        // The same job again: a fresh id, so the queue's dedupe does not swallow it.
        let out = cmd(&["dlq", "retry", "2", "--json"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let second: Value = serde_json::from_slice(&out).unwrap();
        assert_ne!(first["job_id"], second["job_id"]);
        cmd(&["dlq", "retry", "3"]).assert().code(1).stderr(
            "error[bad_payload]: dead letter 3 cannot be retried: malformed job payload: key \
             must be a string at line 1 column 2\n",
        );
        cmd(&["dlq", "retry", "4"]).assert().code(2).stderr(
            "error[usage]: dead letter 4 is from queue \"emails\"; fleetctl retries trading-cycle \
             jobs only\n",
        );
        cmd(&["dlq", "retry", "1"])
            .assert()
            .code(2)
            .stderr("error[not_found]: dead letter 1 not found\n");
        let ids: Vec<i64> = fleet
            .json(&["dlq", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, [4, 3]);
        (fleet, first, second)
    })
    .await
    .unwrap();
    let (fleet, first, second) = fleet;

    // Both jobs are on the queue with the dead letter's payload.
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
    let mut consumer = queue.consumer("test").await.unwrap();
    let got = consumer.fetch(10).await.unwrap();
    let ids: Vec<&str> = got.iter().map(|d| d.envelope.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            first["job_id"].as_str().unwrap(),
            second["job_id"].as_str().unwrap()
        ]
    );
    for d in &got {
        assert!(d.envelope.id.starts_with("cycle:1:1700000000:retry:"));
        assert_eq!(d.envelope.attempt, 1);
        assert_eq!(
            TradingCycle::from_payload(&d.envelope.payload).unwrap(),
            job
        );
    }
    // The run of that slot is armed again for the worker.
    let run = fleet
        .db()
        .store()
        .run_for_slot(job.subscription_id, slot)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status, RunStatus::Enqueued);
    fleet.close().await;
    redis.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_needs_yes_and_honours_the_age() {
    let fleet = Fleet::with_db(TestDb::sqlite().await.unwrap()).await;
    for (job, days) in [("old", 10), ("new", 1), ("older", 30)] {
        dead_letter(&fleet, TRADING_CYCLE_QUEUE, "{}", job, Duration::days(days)).await;
    }
    let fleet = tokio::task::spawn_blocking(move || {
        fleet
            .cmd(&["dlq", "purge", "--older-than", "7d"])
            .assert()
            .code(2)
            .stderr("error[usage]: purging deletes dead letters for good; pass --yes to confirm\n");
        fleet
            .cmd(&["dlq", "purge", "--older-than", "a week", "--yes"])
            .assert()
            .code(2)
            .stderr(
                "error[usage]: --older-than: \"a week\" is not a duration (a whole number and a \
                 unit s, m, h, d or w, e.g. 24h)\n",
            );
        fleet
            .cmd(&["dlq", "purge", "--older-than", "7d", "--yes"])
            .assert()
            .success()
            .stdout("purged 2 dead letter(s)\n");
        let v = fleet.json(&["dlq", "list"]);
        assert_eq!(v.as_array().unwrap().len(), 1);
        assert_eq!(v[0]["job_id"], "new");
        assert_eq!(fleet.json(&["dlq", "purge", "--yes"])["purged"], 1);
        assert_eq!(fleet.json(&["dlq", "list"]), Value::Array(vec![]));
        fleet
    })
    .await
    .unwrap();
    fleet.close().await;
}
