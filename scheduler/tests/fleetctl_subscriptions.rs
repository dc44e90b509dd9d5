//! `fleetctl subscriptions`, `bots`, `runs` and `performance` as processes: every bad input of
//! `subscriptions create` refused with its exact message before anything is stored (PAPER answers
//! the symbol and leverage checks), the life cycle of a subscription, and runs / performance
//! read back from rows the store wrote.
#![allow(clippy::unwrap_used)]

mod support;

use chrono::{Duration, Utc};
use predicates::prelude::*;
use rust_decimal::Decimal;
use serde_json::Value;
use support::Fleet;
use tradefleet::domain::{ClientOrderId, OrderStatus, OrderType, PositionSide, Side, Symbol};
use tradefleet::store::{
    NewRun, NewTrade, OrderRecord, OrderRole, RunOutcome, RunStatus, RunTrigger,
};
use tradefleet_tests::TestDb;

fn create(fleet: &Fleet, extra: &[&str]) -> assert_cmd::Command {
    let mut args = vec![
        "subscriptions",
        "create",
        "--principal",
        "alice",
        "--bot",
        "rsi_bollinger",
    ];
    args.extend_from_slice(extra);
    fleet.cmd(&args)
}

fn paper(fleet: &Fleet, extra: &[&str]) -> assert_cmd::Command {
    let mut args = vec![
        "--exchange",
        "paper",
        "--symbol",
        "XRP/USDT:USDT",
        "--interval",
        "1h",
    ];
    args.extend_from_slice(extra);
    create(fleet, &args)
}

fn count_subscriptions(fleet: &Fleet) -> usize {
    fleet
        .json(&["subscriptions", "list"])
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn bad_subscription_input_is_refused_before_anything_is_stored() {
    let fleet = Fleet::sqlite();
    fleet
        .cmd(&["principals", "add", "alice"])
        .assert()
        .success();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    let cases: Vec<(Vec<String>, String)> =
        vec![
        (
            vec!["--exchange", "mtgox", "--symbol", "XRP/USDT:USDT", "--interval", "1h"]
                .into_iter()
                .map(String::from)
                .collect(),
            "error[config]: registry: configuration error: unknown exchange \"mtgox\"; \
             supported: paper, binance, bybit, okx, bitget, htx, kraken\n"
                .into(),
        ),
        (
            vec!["--exchange", "paper", "--symbol", "BTC/USDT:USDT", "--interval", "1h"]
                .into_iter()
                .map(String::from)
                .collect(),
            "error[unknown_symbol]: paper: unknown symbol BTC/USDT:USDT: the paper market \
             replays XRP/USDT:USDT only\n"
                .into(),
        ),
        (
            vec!["--exchange", "paper", "--symbol", "XRPUSDT", "--interval", "1h"]
                .into_iter()
                .map(String::from)
                .collect(),
            "error[usage]: --symbol: bad symbol \"XRPUSDT\": missing ':SETTLE' (only perpetual \
             futures are traded) (expected BASE/QUOTE:SETTLE, e.g. BTC/USDT:USDT)\n"
                .into(),
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        create(&fleet, &args).assert().code(2).stderr(expected);
    }
    let paper_cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--leverage".into(), "21".into()],
            "error[usage]: --leverage 21: above the maximum 20 of XRP/USDT:USDT on paper\n",
        ),
        (
            vec!["--timeframes".into(), "30m,2m".into()],
            "error[usage]: --timeframes: unsupported timeframe \"2m\" (supported: 1m 3m 5m 15m \
             30m 1h 2h 4h 6h 8h 12h 1d 1w)\n",
        ),
        (
            vec![
                "--bot-config".into(),
                file("syntax.json", "{\"strategy\": "),
            ],
            "",
        ),
        (
            vec![
                "--bot-config".into(),
                file("strategy.json", r#"{"strategy":{"rsi_period":"fourteen"}}"#),
            ],
            "",
        ),
        (
            vec![
                "--bot-config".into(),
                file(
                    "risk.json",
                    r#"{"risk":{"max_drawdown_pct":"20","stop":1}}"#,
                ),
            ],
            "",
        ),
        (
            vec![
                "--bot-config".into(),
                file(
                    "capital.json",
                    r#"{"risk":{"capital":{"base_position_size_pct":"0"}}}"#,
                ),
            ],
            "",
        ),
        (
            vec![
                "--bot-config".into(),
                file("top.json", r#"{"strategies":{}}"#),
            ],
            "",
        ),
        (
            vec![
                "--bot-config".into(),
                file("exec.json", r#"{"execution":[1]}"#),
            ],
            "",
        ),
    ];
    let expected_config_errors = [
        "not valid JSON: EOF while parsing a value at line 1 column 13",
        "strategy: invalid config for strategy rsi_bollinger: field `rsi_period`: invalid type: \
         string \"fourteen\", expected usize",
        "risk: unknown field `stop`, expected one of `capital`, `daily_loss_limit_pct`, \
         `max_drawdown_pct`, `max_consecutive_losses`",
        "risk.capital.base_position_size_pct: 0 is outside (0..=100",
        "unknown field `strategies`, expected one of `strategy`, `execution`, `risk` at line 1 \
         column 13",
        "execution: expected a JSON object",
    ];
    let mut config_errors = expected_config_errors.iter();
    for (args, expected) in paper_cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let expected = if expected.is_empty() {
            format!(
                "error[usage]: --bot-config {}: {}\n",
                args[1],
                config_errors.next().unwrap()
            )
        } else {
            expected.to_string()
        };
        paper(&fleet, &args).assert().code(2).stderr(expected);
    }
    for (interval, expected) in [
        (
            "30s",
            "error[usage]: --interval 30s: must be at least one minute\n",
        ),
        (
            "soon",
            "error[usage]: --interval: \"soon\" is not a duration (a whole number and a unit s, \
             m, h, d or w, e.g. 24h)\n",
        ),
    ] {
        create(
            &fleet,
            &[
                "--exchange",
                "paper",
                "--symbol",
                "XRP/USDT:USDT",
                "--interval",
                interval,
            ],
        )
        .assert()
        .code(2)
        .stderr(expected);
    }
    fleet
        .cmd(&[
            "subscriptions",
            "create",
            "--principal",
            "alice",
            "--bot",
            "nope",
            "--exchange",
            "paper",
            "--symbol",
            "XRP/USDT:USDT",
            "--interval",
            "1h",
        ])
        .assert()
        .code(2)
        .stderr(
            "error[usage]: unknown bot \"nope\" (built in: mtf_trend, rsi_bollinger; see \
             `fleetctl bots list`)\n",
        );
    fleet
        .cmd(&[
            "subscriptions",
            "create",
            "--principal",
            "bob",
            "--bot",
            "rsi_bollinger",
            "--exchange",
            "paper",
            "--symbol",
            "XRP/USDT:USDT",
            "--interval",
            "1h",
        ])
        .assert()
        .code(2)
        .stderr(
            "error[not_found]: principal \"bob\" not found (add it with `fleetctl principals \
             add bob`)\n",
        );
    // Nothing was stored, not even the built-in bot.
    assert_eq!(count_subscriptions(&fleet), 0);
    assert_eq!(fleet.json(&["bots", "list"]), Value::Array(vec![]));
}

#[test]
fn a_subscription_lives_created_paused_resumed_deleted() {
    let fleet = Fleet::sqlite();
    fleet
        .cmd(&["principals", "add", "alice"])
        .assert()
        .success();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bot.json");
    std::fs::write(
        &config,
        r#"{"strategy":{"rsi_period":10},"execution":{"note":"x"},"risk":{"max_drawdown_pct":"15"}}"#,
    )
    .unwrap();
    let out = paper(
        &fleet,
        &[
            "--timeframes",
            "30m,1h,4h",
            "--leverage",
            "20",
            "--bot-config",
            config.to_str().unwrap(),
            "--json",
        ],
    )
    .assert()
    .success()
    .get_output()
    .stdout
    .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["id"], 1);
    assert_eq!(v["timeframes"], serde_json::json!(["30m", "1h", "4h"]));
    assert_eq!(v["interval_seconds"], 3600);
    assert_eq!(v["leverage"], "20");
    assert_eq!(v["status"], "active");
    assert_eq!(v["strategy_config"]["rsi_period"], 10);
    assert_eq!(v["risk_config"]["max_drawdown_pct"], "15");
    // The first run is the next whole hour.
    let next = chrono::DateTime::parse_from_rfc3339(v["next_run_at"].as_str().unwrap()).unwrap();
    assert_eq!(next.timestamp() % 3600, 0);
    assert!(next.timestamp() > Utc::now().timestamp() - 1);

    // The built-in bot was created on demand, as a TECHNICAL bot.
    let bots = fleet.json(&["bots", "list"]);
    assert_eq!(bots[0]["name"], "rsi_bollinger");
    assert_eq!(bots[0]["kind"], "TECHNICAL");
    let bots = fleet.json(&["bots", "list", "--builtin"]);
    assert_eq!(bots.as_array().unwrap().len(), 2);

    // Default timeframes follow the interval.
    let v = fleet.json(&[
        "subscriptions",
        "create",
        "--principal",
        "alice",
        "--bot",
        "mtf_trend",
        "--exchange",
        "paper",
        "--symbol",
        "XRP/USDT:USDT",
        "--interval",
        "15m",
    ]);
    assert_eq!(v["timeframes"], serde_json::json!(["15m"]));

    fleet
        .cmd(&["subscriptions", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "1   alice      rsi_bollinger  paper     XRP/USDT:USDT  30m,1h,4h   3600s     20        active",
        ));
    let v = fleet.json(&["subscriptions", "pause", "1", "--reason", "maintenance"]);
    assert_eq!(
        (&v["status"], &v["status_reason"]),
        (&Value::from("paused"), &Value::from("maintenance"))
    );
    let v = fleet.json(&["subscriptions", "list", "--status", "paused"]);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["principal"], "alice");
    fleet
        .cmd(&["subscriptions", "list", "--status", "sleeping"])
        .assert()
        .code(2)
        .stderr("error[usage]: --status: \"sleeping\" is not one of active, paused, stopped\n");
    let v = fleet.json(&["subscriptions", "resume", "1"]);
    assert_eq!(v["status"], "active");
    assert_eq!(v["status_reason"], Value::Null);
    fleet
        .cmd(&["subscriptions", "show", "1"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "risk_config       {\"max_drawdown_pct\":\"15\"}",
        ));
    fleet
        .cmd(&["subscriptions", "delete", "1"])
        .assert()
        .code(2)
        .stderr(
            "error[usage]: deleting subscription 1 also deletes its runs, orders, positions, \
             trades and equity snapshots; pass --yes to confirm (or pause it instead)\n",
        );
    fleet
        .cmd(&["subscriptions", "delete", "1", "--yes"])
        .assert()
        .success()
        .stdout("deleted subscription 1\n");
    fleet
        .cmd(&["subscriptions", "show", "1"])
        .assert()
        .code(2)
        .stderr("error[not_found]: subscription 1 not found\n");
    assert_eq!(count_subscriptions(&fleet), 1);
}

/// A subscription with three runs (two recent, one two days old), orders on one of them, closed
/// trades and equity snapshots, written through the store.
async fn seeded(db: TestDb) -> Fleet {
    let fleet = Fleet::with_db(db).await;
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
    let symbol: Symbol = "XRP/USDT:USDT".parse().unwrap();
    let sub = store
        .create_subscription(
            &tradefleet::store::NewSubscription {
                principal_id: alice.id,
                bot_id: bot.id,
                exchange: "paper".into(),
                symbol: symbol.clone(),
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
    let mut run_ids = Vec::new();
    for (hours_ago, status) in [
        (48, RunStatus::Failed),
        (2, RunStatus::Succeeded),
        (1, RunStatus::Skipped),
    ] {
        let run = store
            .insert_run(&NewRun {
                subscription_id: sub.id,
                slot: now - Duration::hours(hours_ago),
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
                    status,
                    signal: Some("BUY".into()),
                    confidence: Some(Decimal::new(75, 2)),
                    analysis: None,
                    error: (status == RunStatus::Failed).then(|| "venue down".to_string()),
                },
                now,
            )
            .await
            .unwrap();
        run_ids.push(run.id);
    }
    store
        .upsert_order(
            &OrderRecord {
                client_order_id: ClientOrderId::new("tf1entry").unwrap(),
                subscription_id: sub.id,
                run_id: Some(run_ids[1]),
                exchange: "paper".into(),
                symbol: symbol.clone(),
                exchange_order_id: Some("P-1".into()),
                role: OrderRole::Entry,
                side: Side::Buy,
                order_type: OrderType::Market,
                quantity: Decimal::from(100),
                price: None,
                trigger_price: None,
                reduce_only: false,
                status: OrderStatus::Filled,
                filled_quantity: Decimal::from(100),
                average_price: Some(Decimal::ONE),
                fee: None,
                raw: None,
            },
            now,
        )
        .await
        .unwrap();
    let t0 = now - Duration::hours(10);
    for (pnl, open_h, close_h) in [("10", 0, 1), ("-4", 1, 2), ("6", 2, 3)] {
        store
            .insert_trade(&NewTrade {
                subscription_id: sub.id,
                run_id: None,
                symbol: symbol.clone(),
                side: PositionSide::Long,
                quantity: Decimal::from(100),
                entry_price: Decimal::ONE,
                exit_price: Some(Decimal::ONE),
                realized_pnl: pnl.parse().unwrap(),
                fees: Decimal::ZERO,
                opened_at: t0 + Duration::hours(open_h),
                closed_at: Some(t0 + Duration::hours(close_h)),
            })
            .await
            .unwrap();
    }
    for (i, equity) in ["1000", "1010", "1006", "1012"].iter().enumerate() {
        store
            .insert_equity_snapshot(
                sub.id,
                t0 + Duration::minutes(i as i64),
                equity.parse().unwrap(),
                Decimal::ZERO,
            )
            .await
            .unwrap();
    }
    fleet
}

fn run_statuses(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_performance_on_sqlite() {
    runs_and_performance_read_what_the_store_wrote(TestDb::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_performance_on_postgres() {
    runs_and_performance_read_what_the_store_wrote(TestDb::postgres().await.unwrap()).await;
}

async fn runs_and_performance_read_what_the_store_wrote(db: TestDb) {
    let fleet = seeded(db).await;
    let fleet = tokio::task::spawn_blocking(move || {
        let v = fleet.json(&["runs", "list", "--subscription", "1"]);
        assert_eq!(run_statuses(&v), ["skipped", "succeeded", "failed"]);
        let v = fleet.json(&["runs", "list", "--since", "24h"]);
        assert_eq!(run_statuses(&v), ["skipped", "succeeded"]);
        let v = fleet.json(&["runs", "list", "--status", "failed"]);
        assert_eq!(run_statuses(&v), ["failed"]);
        assert_eq!(v[0]["error"], "venue down");
        let v = fleet.json(&["runs", "list", "--limit", "1"]);
        assert_eq!(run_statuses(&v), ["skipped"]);
        let since = (Utc::now() - Duration::hours(3)).to_rfc3339();
        let v = fleet.json(&["runs", "list", "--since", &since, "--subscription", "1"]);
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(
            fleet.json(&["runs", "list", "--subscription", "2"]),
            Value::Array(vec![])
        );
        fleet
            .cmd(&["runs", "list", "--status", "done"])
            .assert()
            .code(2)
            .stderr(
                "error[usage]: --status: \"done\" is not one of enqueued, running, succeeded, \
                 failed, skipped, dead_lettered\n",
            );
        fleet
            .cmd(&["runs", "list", "--since", "yesterday"])
            .assert()
            .code(2)
            .stderr(
                "error[usage]: --since: \"yesterday\" is neither RFC 3339 nor a duration like \
                 24h or 7d\n",
            );

        let v = fleet.json(&["runs", "show", "2"]);
        assert_eq!(v["status"], "succeeded");
        assert_eq!(v["orders"][0]["client_order_id"], "tf1entry");
        assert_eq!(v["orders"][0]["status"], "filled");
        fleet
            .cmd(&["runs", "show", "2"])
            .assert()
            .success()
            .stdout(predicate::str::contains(
                "tf1entry   P-1  entry  buy   market  filled  100",
            ));
        fleet
            .cmd(&["runs", "show", "99"])
            .assert()
            .code(2)
            .stderr("error[not_found]: cycle run 99 not found\n");

        let v = fleet.json(&["performance", "--subscription", "1"]);
        assert_eq!(v["total_trades"], 3);
        assert_eq!(v["winning_trades"], 2);
        assert_eq!(v["losing_trades"], 1);
        assert_eq!(v["win_rate_pct"], "66.67");
        assert_eq!(v["total_pnl"], "12");
        assert_eq!(v["starting_equity"], "1000");
        assert_eq!(v["total_pnl_pct"], "1.2");
        assert_eq!(v["average_trade_seconds"], 3600);
        assert_eq!(v["max_drawdown"], "4");
        assert_eq!(v["max_drawdown_pct"], "0.396");
        let sharpe = v["sharpe_ratio"].as_f64().unwrap();
        assert!((sharpe - 0.04 / 0.0052f64.sqrt()).abs() < 1e-9, "{sharpe}");
        fleet
            .cmd(&["performance", "--subscription", "1"])
            .assert()
            .success()
            .stdout(predicate::str::contains("win_rate                66.67%"))
            .stdout(predicate::str::contains("average_trade_duration  1h 0m"))
            .stdout(predicate::str::contains("sharpe_ratio            0.5547"));
        fleet
            .cmd(&["performance", "--subscription", "7"])
            .assert()
            .code(2)
            .stderr("error[not_found]: subscription 7 not found\n");
        fleet
    })
    .await
    .unwrap();
    fleet.close().await;
}
