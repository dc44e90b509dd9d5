//! The record step on both SQL backends: a PAPER cycle's entry, protective orders, position,
//! equity and run analysis are written in one fenced transaction; the stop-loss hit becomes a
//! trade read back into the next cycle's state; a stale fencing token writes nothing; a tripped
//! breaker pauses the subscription with its reason.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal_macros::dec;
use sea_orm::ConnectionTrait;
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
    BotKind, EquityMarks, FencedFinish, NewBot, NewRun, NewSubscription, OrderRole, PositionStatus,
    RunOutcome, RunStatus, RunTrigger, Store, StoreError, SubscriptionStatus,
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
            &RecordContext { run_id: run1, subscription_id: sub.id, exchange: "paper", fencing_token: 1, now: clock.now(), marks: None },
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
            &RecordContext { run_id: run1, subscription_id: sub.id, exchange: "paper", fencing_token: 0, now: clock.now(), marks: None },
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
            &RecordContext { run_id: run2, subscription_id: sub.id, exchange: "paper", fencing_token: 2, now: clock.now(), marks: None },
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
            &RecordContext { run_id: run, subscription_id: sub.id, exchange: "paper", fencing_token: 1, now: clock.now(), marks: None },
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

test_both_backends! {
    async fn equity_marks_are_seeded_from_snapshots_then_kept_on_the_subscription(db) {
        let store = db.store();
        let sub = subscription(store).await;
        let now = at(T0 + 7_200);
        // History: a peak yesterday, then today's first and a later equity.
        store.insert_equity_snapshot(sub.id, at(T0 - 600), dec!(20000), dec!(0)).await.unwrap();
        store.insert_equity_snapshot(sub.id, at(T0 + 60), dec!(10500), dec!(0)).await.unwrap();
        store.insert_equity_snapshot(sub.id, at(T0 + 3_600), dec!(10400), dec!(0)).await.unwrap();

        // No marks yet: they are seeded from the snapshots.
        let seeded = load_state(store, &sub, now).await.unwrap();
        assert_eq!(seeded.peak_equity, Some(dec!(20000)));
        assert_eq!(seeded.day_start_equity, Some(dec!(10500)));
        assert_eq!(seeded.day_start_at, Some(at(T0 + 60)));

        // A record stores the marks after its equity with the fencing check...
        let marks = EquityMarks::after(
            seeded.peak_equity,
            seeded.day_start_equity.zip(seeded.day_start_at),
            dec!(10300),
            now,
        );
        assert_eq!(
            marks,
            EquityMarks { peak: dec!(20000), day_start_equity: dec!(10500), day_start_at: at(T0 + 60) }
        );
        store.check_fencing_token_with_marks(sub.id, 1, Some(&marks)).await.unwrap();
        // ...and from then on they come with the subscription, not from the snapshots.
        store
            .connection()
            .execute_unprepared("DELETE FROM equity_snapshots")
            .await
            .unwrap();
        let sub = store.subscription(sub.id).await.unwrap();
        let kept = load_state(store, &sub, now).await.unwrap();
        assert_eq!(kept.peak_equity, Some(dec!(20000)));
        assert_eq!(kept.day_start_equity, Some(dec!(10500)));
        assert_eq!(kept.day_start_at, Some(at(T0 + 60)));

        // The next UTC day has no day start until its first record, which becomes it.
        let tomorrow = at(T0 + 86_400 + 30);
        let next_day = load_state(store, &sub, tomorrow).await.unwrap();
        assert_eq!(next_day.peak_equity, Some(dec!(20000)));
        assert_eq!(next_day.day_start_equity, None);
        let rolled = EquityMarks::after(next_day.peak_equity, None, dec!(21000), tomorrow);
        assert_eq!(
            rolled,
            EquityMarks { peak: dec!(21000), day_start_equity: dec!(21000), day_start_at: tomorrow }
        );
        // A stale fencing token stores nothing.
        store.check_fencing_token_with_marks(sub.id, 2, Some(&rolled)).await.unwrap();
        let stale = EquityMarks { peak: dec!(1), ..rolled };
        assert!(store.check_fencing_token_with_marks(sub.id, 1, Some(&stale)).await.is_err());
        let sub = store.subscription(sub.id).await.unwrap();
        assert_eq!(sub.peak_equity.map(|p| p.get()), Some(dec!(21000)));
        assert_eq!(sub.day_start_at, Some(tomorrow));
    }
}

#[tokio::test]
async fn the_one_statement_record_is_fenced_and_all_or_nothing() {
    let db = tradefleet_tests::TestDb::postgres().await.unwrap();
    let store = db.store();
    let sub = subscription(store).await;
    let run = run_row(store, sub.id, T0).await;
    store.mark_running(run, "w-1", 4, 1, at(T0)).await.unwrap();
    // A newer worker already committed under token 5.
    store.check_fencing_token(sub.id, 5).await.unwrap();
    let outcome = RunOutcome {
        status: RunStatus::Succeeded,
        signal: Some("HOLD".into()),
        confidence: Some(dec!(0.4213)),
        analysis: Some(json!({"notes": ["held"]})),
        error: None,
    };
    let marks = EquityMarks {
        peak: dec!(10100),
        day_start_equity: dec!(10000),
        day_start_at: at(T0),
    };
    let finish = |token: i64, run_id: i64| FencedFinish {
        run_id,
        subscription_id: sub.id,
        fencing_token: token,
        now: at(T0 + 30),
        snapshot: Some((dec!(10050.5), dec!(-1.25))),
        marks: Some(&marks),
        outcome: &outcome,
    };

    // Stale: nothing is written.
    match store.finish_run_fenced(&finish(4, run)).await {
        Err(StoreError::StaleFencingToken {
            token: 4,
            newest: 5,
            ..
        }) => {}
        other => panic!("expected a stale token error, got {other:?}"),
    }
    assert_eq!(store.run(run).await.unwrap().status, RunStatus::Running);
    assert!(
        store
            .list_equity_snapshots(sub.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.subscription(sub.id).await.unwrap().peak_equity, None);
    // A run that does not exist: nothing is written either, and the error names the run.
    assert!(matches!(
        store.finish_run_fenced(&finish(6, run + 1_000)).await,
        Err(StoreError::NotFound {
            entity: "cycle run",
            ..
        })
    ));
    assert_eq!(
        store.subscription(sub.id).await.unwrap().last_fencing_token,
        Some(5)
    );
    assert!(
        store
            .list_equity_snapshots(sub.id, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Current: the run, the snapshot, the marks and the token, in one statement.
    store.finish_run_fenced(&finish(6, run)).await.unwrap();
    let row = store.run(run).await.unwrap();
    assert_eq!(row.status, RunStatus::Succeeded);
    assert_eq!(row.signal.as_deref(), Some("HOLD"));
    assert_eq!(row.confidence.map(|c| c.get()), Some(dec!(0.4213)));
    assert_eq!(row.analysis, Some(json!({"notes": ["held"]})));
    assert_eq!(row.finished_at, Some(at(T0 + 30)));
    let snaps = store.list_equity_snapshots(sub.id, 10).await.unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].equity.get(), dec!(10050.5));
    assert_eq!(snaps[0].unrealized_pnl.get(), dec!(-1.25));
    let s = store.subscription(sub.id).await.unwrap();
    assert_eq!(s.last_fencing_token, Some(6));
    assert_eq!(s.peak_equity.map(|p| p.get()), Some(dec!(10100)));
    assert_eq!(s.day_start_equity.map(|p| p.get()), Some(dec!(10000)));
    assert_eq!(s.day_start_at, Some(at(T0)));

    // A finish without a balance keeps the marks and writes no snapshot.
    let run2 = run_row(store, sub.id, T0 + 300).await;
    let mut bare = finish(7, run2);
    bare.snapshot = None;
    bare.marks = None;
    store.finish_run_fenced(&bare).await.unwrap();
    assert_eq!(
        store.list_equity_snapshots(sub.id, 10).await.unwrap().len(),
        1
    );
    let s = store.subscription(sub.id).await.unwrap();
    assert_eq!(s.peak_equity.map(|p| p.get()), Some(dec!(10100)));
    assert_eq!(store.run(run2).await.unwrap().status, RunStatus::Succeeded);
    db.close().await;
}

#[tokio::test]
async fn the_one_statement_record_is_refused_on_sqlite() {
    let db = tradefleet_tests::TestDb::sqlite().await.unwrap();
    let store = db.store();
    let sub = subscription(store).await;
    let run = run_row(store, sub.id, T0).await;
    let outcome = RunOutcome {
        status: RunStatus::Succeeded,
        signal: None,
        confidence: None,
        analysis: None,
        error: None,
    };
    let result = store
        .finish_run_fenced(&FencedFinish {
            run_id: run,
            subscription_id: sub.id,
            fencing_token: 1,
            now: at(T0),
            snapshot: None,
            marks: None,
            outcome: &outcome,
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::Invalid { .. })),
        "{result:?}"
    );
    db.close().await;
}
