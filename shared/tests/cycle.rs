//! The whole bot cycle against the PAPER venue on real XRP/USDT data: entry + stop-loss +
//! take-profit placed once, a retried slot places nothing new, and the stop hit on the next
//! candles becomes a trade whose PnL equals the venue's balance change to the last digit.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use tradefleet::bot::crawl::NoCache;
use tradefleet::bot::cycle::{CycleSpec, CycleState, run_cycle};
use tradefleet::bot::execution::{ExecutionSettings, ExitReason, NoGate};
use tradefleet::bot::order_ids::OrderRole;
use tradefleet::bot::risk::RiskConfig;
use tradefleet::bot::signal::{Action, Signal};
use tradefleet::bot::strategy::{self, MarketView, Strategy, StrategyError};
use tradefleet::clock::{Clock, ManualClock};
use tradefleet::domain::{OrderStatus, Symbol, Timeframe};
use tradefleet::exchange::paper::PaperSettings;
use tradefleet::exchange::{Exchange, VenueParams, build_exchange};

/// 2021-11-17 00:00 UTC: the last closed 5m candle (23:55) closes at 1.0881; the 00:05 candle
/// trades down to 1.0798.
const T0: i64 = 1_637_107_200;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

fn xrp() -> Symbol {
    "XRP/USDT:USDT".parse().unwrap()
}

/// Buys at the last close with a fixed stop and target until `hold_from` (Unix seconds of the
/// last closed candle's open), then holds: the cycle's mechanics, not a strategy's judgement,
/// are under test here.
#[derive(Debug)]
struct AlwaysBuy {
    stop: Decimal,
    target: Decimal,
    hold_from: i64,
}

impl Strategy for AlwaysBuy {
    fn name(&self) -> &'static str {
        "always_buy"
    }
    fn validate(&self) -> Result<(), StrategyError> {
        Ok(())
    }
    fn generate(&self, view: &MarketView<'_>) -> Result<Signal, StrategyError> {
        let last = view.shortest().and_then(|f| f.last()).unwrap();
        if last.open_time.timestamp() >= self.hold_from {
            return Ok(Signal::hold(last.close, 0.5, vec!["scripted hold".into()]).unwrap());
        }
        Ok(Signal::buy(
            last.close,
            self.stop,
            self.target,
            0.8,
            vec!["scripted".into()],
        )
        .unwrap())
    }
}

fn venue() -> (Arc<ManualClock>, Arc<dyn Exchange>) {
    let clock = Arc::new(ManualClock::new(at(T0)));
    let params = VenueParams {
        clock: clock.clone(),
        paper: PaperSettings::default(),
        ..VenueParams::default()
    };
    (clock, build_exchange("paper", &params).unwrap())
}

#[tokio::test]
async fn entry_once_retry_places_nothing_and_the_stop_becomes_an_exact_trade() {
    let (clock, ex) = venue();
    // Buys while the last closed candle opened before 00:00, i.e. at the 00:00 cycle only.
    let strategy = AlwaysBuy {
        stop: dec!(1.0800),
        target: dec!(1.2000),
        hold_from: T0,
    };
    let risk = RiskConfig::default();
    let symbol = xrp();
    let tfs = [Timeframe::M5];
    let spec = |slot: i64, now: DateTime<Utc>| CycleSpec {
        subscription_id: 7,
        slot: at(slot),
        exchange_name: "paper",
        symbol: &symbol,
        timeframes: &tfs,
        candles: 60,
        leverage: 5,
        strategy: &strategy,
        risk: &risk,
        now,
    };
    let settings = ExecutionSettings::default();
    let start = CycleState::default();

    // Cycle 1 at 00:00: entry + SL + TP, all placed now.
    let first = run_cycle(
        ex.as_ref(),
        &NoCache,
        None,
        &spec(T0, clock.now()),
        &start,
        &NoGate,
        &settings,
    )
    .await
    .unwrap();
    assert_eq!(first.signal.as_ref().unwrap().action(), Action::Buy);
    let exec = first.execution.as_ref().unwrap();
    let roles: Vec<_> = exec.orders.iter().map(|o| (o.role, o.placed_now)).collect();
    assert_eq!(
        roles,
        [
            (OrderRole::Entry, true),
            (OrderRole::StopLoss, true),
            (OrderRole::TakeProfit, true)
        ]
    );
    // fixed_pct 2% of 10000 = 200 margin x 5 = 1000 notional / 1.0881 = 919.03 -> step 0.1.
    assert_eq!(exec.filled_quantity, dec!(919));
    let tracked = first.tracked.clone().unwrap();
    assert_eq!(tracked.quantity, dec!(919));
    assert_eq!(ex.open_orders(&symbol).await.unwrap().len(), 2);

    // The same slot again, as a retried job that never recorded the first attempt: nothing new.
    let again = run_cycle(
        ex.as_ref(),
        &NoCache,
        None,
        &spec(T0, clock.now()),
        &start,
        &NoGate,
        &settings,
    )
    .await
    .unwrap();
    let exec2 = again.execution.as_ref().unwrap();
    assert!(
        exec2.orders.iter().all(|o| !o.placed_now),
        "{:?}",
        exec2.orders
    );
    assert_eq!(exec2.orders.len(), 3);
    assert_eq!(ex.open_orders(&symbol).await.unwrap().len(), 2);
    let positions = ex.positions(Some(&symbol)).await.unwrap();
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0].quantity, dec!(919), "no second entry");

    // 00:10: the 00:05 candle hit the stop. The next cycle records the trade.
    clock.set(at(T0 + 600));
    let state = CycleState {
        tracked: Some(tracked.clone()),
        ..CycleState::default()
    };
    let third = run_cycle(
        ex.as_ref(),
        &NoCache,
        None,
        &spec(T0 + 600, clock.now()),
        &state,
        &NoGate,
        &settings,
    )
    .await
    .unwrap();
    let trade = third.closed.as_ref().unwrap();
    assert_eq!(trade.reason, ExitReason::StopLoss);
    assert_eq!(trade.quantity, dec!(919));
    let exit = trade.exit_order.as_ref().unwrap();
    assert!(matches!(
        exit.status,
        OrderStatus::Triggered | OrderStatus::Filled
    ));
    // Hand check: entry 1.0881 + 2 bp slippage = 1.08831762 -> 1.0884 on the tick (against the
    // taker); the stop at 1.0800 fills 2 bp worse = 1.07978 -> 1.0797.
    // Price PnL (1.0797 - 1.0884) x 919 = -7.9953. Fees 5 bp: 919 x 1.0884 x 0.0005 = 0.5001198
    // and 919 x 1.0797 x 0.0005 = 0.49612215. PnL = -7.9953 - 0.99624195 = -8.99154195.
    assert_eq!(tracked.entry_price, dec!(1.0884));
    assert_eq!(trade.exit_price, Some(dec!(1.0797)));
    assert_eq!(trade.fees, dec!(0.99624195));
    assert_eq!(trade.realized_pnl, Some(dec!(-8.99154195)));
    // ...which is exactly what the venue's balance lost.
    let balance = ex.balance("USDT").await.unwrap();
    assert_eq!(balance.equity, dec!(10000) + trade.realized_pnl.unwrap());
    assert!(
        ex.open_orders(&symbol).await.unwrap().is_empty(),
        "take-profit cancelled"
    );
    assert!(third.tracked.is_none());
    assert!(third.execution.is_none(), "the strategy held");
    assert_eq!(third.signal.as_ref().unwrap().action(), Action::Hold);
}

#[tokio::test]
async fn a_tripped_breaker_trades_nothing() {
    let (clock, ex) = venue();
    let strategy = AlwaysBuy {
        stop: dec!(1.0800),
        target: dec!(1.2000),
        hold_from: i64::MAX,
    };
    let risk = RiskConfig::default(); // 20% max drawdown
    let symbol = xrp();
    let tfs = [Timeframe::M5];
    let spec = CycleSpec {
        subscription_id: 8,
        slot: at(T0),
        exchange_name: "paper",
        symbol: &symbol,
        timeframes: &tfs,
        candles: 60,
        leverage: 5,
        strategy: &strategy,
        risk: &risk,
        now: clock.now(),
    };
    let state = CycleState {
        peak_equity: Some(dec!(13000)), // equity 10000 is 23% below
        ..CycleState::default()
    };
    let out = run_cycle(
        ex.as_ref(),
        &NoCache,
        None,
        &spec,
        &state,
        &NoGate,
        &ExecutionSettings::default(),
    )
    .await
    .unwrap();
    assert!(
        out.breaker
            .as_ref()
            .unwrap()
            .reason
            .contains("max drawdown")
    );
    assert!(out.execution.is_none());
    assert!(ex.positions(Some(&symbol)).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_builtin_strategy_runs_a_whole_day_of_cycles_on_real_data() {
    // rsi_bollinger over 2021-11-17, one cycle per hour on 5m and 1h candles: whatever it
    // decides, every entry is protected and every recorded trade matches the venue.
    let (clock, ex) = venue();
    let strategy = strategy::build("rsi_bollinger", &serde_json::Value::Null).unwrap();
    let risk = RiskConfig::default();
    let symbol = xrp();
    let tfs = [Timeframe::M5, Timeframe::H1];
    let mut state = CycleState::default();
    let mut realized = Decimal::ZERO;
    let mut entries = 0;
    for hour in 0..24 {
        let slot = T0 + hour * 3_600;
        clock.set(at(slot));
        let spec = CycleSpec {
            subscription_id: 9,
            slot: at(slot),
            exchange_name: "paper",
            symbol: &symbol,
            timeframes: &tfs,
            candles: 40,
            leverage: 3,
            strategy: strategy.as_ref(),
            risk: &risk,
            now: clock.now(),
        };
        let out = run_cycle(
            ex.as_ref(),
            &NoCache,
            None,
            &spec,
            &state,
            &NoGate,
            &ExecutionSettings::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.analysis.len(), 2);
        if let Some(t) = &out.closed
            && let Some(p) = t.realized_pnl
        {
            realized += p;
            state.trade_pnls_newest_first.insert(0, p);
        }
        if let Some(e) = &out.execution {
            entries += 1;
            assert!(!e.closed_without_stop);
            assert!(e.orders.iter().any(|o| o.role == OrderRole::StopLoss));
        }
        state.tracked = out.tracked.clone();
    }
    assert!(entries > 0, "the day has entries to check");
    // With nothing open at the end, the venue's equity moved by exactly the recorded PnL.
    if state.tracked.is_none() {
        let b = ex.balance("USDT").await.unwrap();
        assert_eq!(b.equity, dec!(10000) + realized, "{entries} entries");
    }
}
