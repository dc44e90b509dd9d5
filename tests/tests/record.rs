//! The record step on both SQL backends: a PAPER cycle's entry, protective orders, position,
//! equity and run analysis are written in one fenced transaction; the stop-loss hit becomes a
//! trade read back into the next cycle's state; a stale fencing token writes nothing; a tripped
//! breaker pauses the subscription with its reason.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal_macros::dec;
use serde_json::json;
use tradefleet::bot::crawl::NoCache;
use tradefleet::bot::cycle::{CycleSpec, run_cycle};
use tradefleet::bot::execution::{ExecutionSettings, NoGate};
use tradefleet::bot::record::{RecordContext, load_state, record_outcome};
use tradefleet::bot::risk::RiskConfig;
use tradefleet::bot::signal::Signal;
use tradefleet::bot::strategy::{MarketView, Strategy, StrategyError};
use tradefleet::clock::{Clock, ManualClock};
use tradefleet::domain::{Symbol, Timeframe};
use tradefleet::exchange::paper::PaperSettings;
use tradefleet::exchange::{Exchange, VenueParams, build_exchange};
use tradefleet::store::{
    BotKind, NewBot, NewRun, NewSubscription, OrderRole, PositionStatus, RunStatus, RunTrigger,
    Store, StoreError, SubscriptionStatus,
};
use tradefleet_tests::test_both_backends;

/// 2021-11-17 00:00 UTC on the bundled XRP/USDT data (see shared/tests/cycle.rs).
const T0: i64 = 1_637_107_200;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

/// Buys once (while the last closed candle opened before `T0`), then holds.
#[derive(Debug)]
struct BuyOnce;

impl Strategy for BuyOnce {
    fn name(&self) -> &'static str {
        "buy_once"
    }
    fn validate(&self) -> Result<(), StrategyError> {
        Ok(())
    }
    fn generate(&self, view: &MarketView<'_>) -> Result<Signal, StrategyError> {
        let last = view.shortest().and_then(|f| f.last()).unwrap();
        if last.open_time.timestamp() >= T0 {
            return Ok(Signal::hold(last.close, 0.5, vec![]).unwrap());
        }
        Ok(Signal::buy(
            last.close,
            dec!(1.0800),
            dec!(1.2000),
            0.8,
            vec!["scripted".into()],
        )
        .unwrap())
    }
}

async fn subscription(store: &Store) -> tradefleet::store::subscription::Model {
    let p = store.create_principal("alice", at(T0)).await.unwrap();
    let bot = store
        .upsert_bot(
            &NewBot {
                name: "scripted".into(),
                kind: BotKind::Technical,
                strategy: "buy_once".into(),
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
                exchange: "paper".into(),
                symbol: "XRP/USDT:USDT".parse().unwrap(),
                timeframes: vec![Timeframe::M5],
                interval_seconds: 300,
                leverage: dec!(5),
                strategy_config: json!({}),
                execution_config: json!({}),
                risk_config: json!({}),
                testnet: false,
                first_run_at: at(T0),
            },
            at(T0),
        )
        .await
        .unwrap()
}

async fn run_row(store: &Store, sub: i64, slot: i64) -> i64 {
    store
        .insert_run(&NewRun {
            subscription_id: sub,
            slot: at(slot),
            trigger: RunTrigger::Scheduled,
            enqueued_at: at(slot),
        })
        .await
        .unwrap()
        .into_run()
        .id
}

fn paper() -> (Arc<ManualClock>, Arc<dyn Exchange>) {
    let clock = Arc::new(ManualClock::new(at(T0)));
    let ex = build_exchange(
        "paper",
        &VenueParams {
            clock: clock.clone(),
            paper: PaperSettings::default(),
            ..VenueParams::default()
        },
    )
    .unwrap();
    (clock, ex)
}

test_both_backends! {
    async fn a_cycle_is_recorded_and_the_next_one_starts_from_it(db) {
        let store = db.store();
        let sub = subscription(store).await;
        let (clock, ex) = paper();
        let symbol: Symbol = sub.symbol.clone();
        let risk = RiskConfig::default();
        let tfs = [Timeframe::M5];
        let spec = |slot: i64, now: DateTime<Utc>| CycleSpec {
            subscription_id: sub.id,
            slot: at(slot),
            exchange_name: "paper",
            symbol: &symbol,
            timeframes: &tfs,
            candles: 60,
            leverage: 5,
            strategy: &BuyOnce,
            risk: &risk,
            now,
        };

        // Cycle 1: entry + SL + TP, recorded under fencing token 1.
        let run1 = run_row(store, sub.id, T0).await;
        let state = load_state(store, &sub, clock.now()).await.unwrap();
        assert!(state.tracked.is_none());
        let out = run_cycle(ex.as_ref(), &NoCache, None, &spec(T0, clock.now()), &state, &NoGate, &ExecutionSettings::default())
            .await
            .unwrap();
        let tx = store.begin().await.unwrap();
        let summary = record_outcome(
            &tx,
            &RecordContext { run_id: run1, subscription_id: sub.id, exchange: "paper", fencing_token: 1, now: clock.now() },
            &out,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(summary.orders, 3);
        assert!(summary.position_opened);
        let run = store.run(run1).await.unwrap();
        assert_eq!(run.status, RunStatus::Succeeded);
        assert_eq!(run.signal.as_deref(), Some("BUY"));
        let analysis = run.analysis.unwrap();
        assert!(analysis["timeframes"]["5m"]["rsi_14"].is_number(), "{analysis}");
        assert!(analysis["sizing"]["reasons"].is_array(), "{analysis}");
        let orders = store.orders_for_run(run1).await.unwrap();
        let roles: Vec<OrderRole> = orders.iter().map(|o| o.role).collect();
        assert_eq!(roles, [OrderRole::Entry, OrderRole::StopLoss, OrderRole::TakeProfit]);
        assert_eq!(orders[0].filled_quantity.get(), dec!(919));

        // A stale worker (older fencing token) cannot write over it, and nothing it tried stays.
        let tx = store.begin().await.unwrap();
        let err = record_outcome(
            &tx,
            &RecordContext { run_id: run1, subscription_id: sub.id, exchange: "paper", fencing_token: 0, now: clock.now() },
            &out,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StoreError::StaleFencingToken { .. }), "{err}");
        tx.rollback().await.unwrap();

        // Cycle 2 at 00:10: the state read back tracks the position; the stop was hit.
        clock.set(at(T0 + 600));
        let state = load_state(store, &sub, clock.now()).await.unwrap();
        let tracked = state.tracked.clone().unwrap();
        assert_eq!(tracked.quantity, dec!(919));
        assert_eq!(tracked.entry_price, dec!(1.0884));
        assert!(tracked.stop_loss_id.is_some() && tracked.take_profit_id.is_some());
        let run2 = run_row(store, sub.id, T0 + 600).await;
        let out = run_cycle(ex.as_ref(), &NoCache, None, &spec(T0 + 600, clock.now()), &state, &NoGate, &ExecutionSettings::default())
            .await
            .unwrap();
        let tx = store.begin().await.unwrap();
        let summary = record_outcome(
            &tx,
            &RecordContext { run_id: run2, subscription_id: sub.id, exchange: "paper", fencing_token: 2, now: clock.now() },
            &out,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert!(summary.trade_recorded);
        let trades = store.list_trades(sub.id).await.unwrap();
        assert_eq!(trades.len(), 1);
        // Exact PnL, hand-checked in shared/tests/cycle.rs.
        assert_eq!(trades[0].realized_pnl.get(), dec!(-8.99154195));
        assert!(store.list_positions(sub.id, Some(PositionStatus::Open)).await.unwrap().is_empty());
        // The stop-loss order row now shows its fill.
        let sl = store
            .order_by_client_id(tracked.stop_loss_id.unwrap().as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sl.filled_quantity.get(), dec!(919));
        assert_eq!(sl.run_id, Some(run1), "the order keeps the run that placed it");

        let next = load_state(store, &sub, clock.now()).await.unwrap();
        assert!(next.tracked.is_none());
        assert_eq!(next.trade_pnls_newest_first, vec![dec!(-8.99154195)]);
        // Two snapshots: after the entry, and after the stop (10000 - 8.99154195). The peak is
        // the first, and the latest equity is exactly the starting balance plus the trade's PnL.
        let snaps = store.list_equity_snapshots(sub.id, 10).await.unwrap();
        assert_eq!(snaps.len(), 2);
        assert_eq!(snaps[0].equity.get(), dec!(9991.00845805));
        assert_eq!(next.peak_equity, Some(snaps[1].equity.get()));
        assert!(snaps[1].equity.get() > snaps[0].equity.get());
    }
}

test_both_backends! {
    async fn a_tripped_breaker_pauses_the_subscription_with_its_reason(db) {
        let store = db.store();
        let sub = subscription(store).await;
        let (clock, ex) = paper();
        // History says equity peaked far above today's 10000.
        store.insert_equity_snapshot(sub.id, at(T0 - 86_400), dec!(20000), dec!(0)).await.unwrap();
        let symbol: Symbol = sub.symbol.clone();
        let risk = RiskConfig::default();
        let tfs = [Timeframe::M5];
        let spec = CycleSpec {
            subscription_id: sub.id,
            slot: at(T0),
            exchange_name: "paper",
            symbol: &symbol,
            timeframes: &tfs,
            candles: 60,
            leverage: 5,
            strategy: &BuyOnce,
            risk: &risk,
            now: clock.now(),
        };
        let state = load_state(store, &sub, clock.now()).await.unwrap();
        assert_eq!(state.peak_equity, Some(dec!(20000)));
        let out = run_cycle(ex.as_ref(), &NoCache, None, &spec, &state, &NoGate, &ExecutionSettings::default())
            .await
            .unwrap();
        let run = run_row(store, sub.id, T0).await;
        let tx = store.begin().await.unwrap();
        let summary = record_outcome(
            &tx,
            &RecordContext { run_id: run, subscription_id: sub.id, exchange: "paper", fencing_token: 1, now: clock.now() },
            &out,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert!(summary.paused);
        let s = store.subscription(sub.id).await.unwrap();
        assert_eq!(s.status, SubscriptionStatus::Paused);
        assert!(s.status_reason.unwrap().contains("max drawdown"));
        assert_eq!(store.run(run).await.unwrap().status, RunStatus::Skipped);
        assert!(ex.positions(Some(&symbol)).await.unwrap().is_empty());
    }
}

test_both_backends! {
    async fn the_exposure_counts_open_positions_of_the_principals_other_subscriptions_on_the_venue(db) {
        let store = db.store();
        let sub = subscription(store).await;
        let new_sub = |principal_id: i64, exchange: &str| NewSubscription {
            principal_id,
            bot_id: sub.bot_id,
            exchange: exchange.into(),
            symbol: "XRP/USDT:USDT".parse().unwrap(),
            timeframes: vec![Timeframe::M5],
            interval_seconds: 300,
            leverage: dec!(5),
            strategy_config: json!({}),
            execution_config: json!({}),
            risk_config: json!({}),
            testnet: false,
            first_run_at: at(T0),
        };
        let sibling = store.create_subscription(&new_sub(sub.principal_id, "paper"), at(T0)).await.unwrap();
        let other_venue = store.create_subscription(&new_sub(sub.principal_id, "binance"), at(T0)).await.unwrap();
        let bob = store.create_principal("bob", at(T0)).await.unwrap();
        let strangers = store.create_subscription(&new_sub(bob.id, "paper"), at(T0)).await.unwrap();
        let open = |subscription_id: i64, quantity, entry_price| tradefleet::store::NewPosition {
            subscription_id,
            symbol: "XRP/USDT:USDT".parse().unwrap(),
            side: tradefleet::domain::PositionSide::Long,
            quantity,
            entry_price,
            fees: dec!(0),
            opened_at: at(T0),
        };
        // Counted: the sibling on the same venue. Not counted: the subscription's own position,
        // another venue's, another principal's, and a closed one.
        store.open_position(&open(sibling.id, dec!(10), dec!(1.5))).await.unwrap();
        store.open_position(&open(sub.id, dec!(100), dec!(1))).await.unwrap();
        store.open_position(&open(other_venue.id, dec!(100), dec!(1))).await.unwrap();
        store.open_position(&open(strangers.id, dec!(100), dec!(1))).await.unwrap();
        let state = load_state(store, &sub, at(T0)).await.unwrap();
        assert_eq!(state.open_exposure, dec!(15.0));
        let state = load_state(store, &sibling, at(T0)).await.unwrap();
        assert_eq!(state.open_exposure, dec!(100));
    }
}
