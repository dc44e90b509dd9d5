//! One full bot cycle on the PAPER venue without I/O (in-memory venue state, no cache, no LLM):
//! crawl -> analyze -> signal -> size, and with an entry, execute (entry + stop-loss + take-profit).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rust_decimal::Decimal;
use tradefleet::bot::crawl::NoCache;
use tradefleet::bot::cycle::{CycleSpec, CycleState, run_cycle};
use tradefleet::bot::execution::{ExecutionSettings, NoGate};
use tradefleet::bot::risk::RiskConfig;
use tradefleet::bot::signal::Signal;
use tradefleet::bot::strategy::{self, MarketView, Strategy, StrategyError};
use tradefleet::clock::ManualClock;
use tradefleet::domain::{Symbol, Timeframe};
use tradefleet::exchange::{Exchange, VenueParams, build_exchange};

/// 2021-11-21 12:00 UTC: 156 hours into the bundled XRP/USDT data, enough 1h candles.
const T0: i64 = 1_637_496_000;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

fn paper() -> Arc<dyn Exchange> {
    let params = VenueParams {
        clock: Arc::new(ManualClock::new(at(T0))),
        ..VenueParams::default()
    };
    match build_exchange("paper", &params) {
        Ok(ex) => ex,
        Err(e) => panic!("paper venue: {e}"),
    }
}

/// Always enters long, so the execute stage runs every time.
#[derive(Debug)]
struct Enter;

impl Strategy for Enter {
    fn name(&self) -> &'static str {
        "enter"
    }
    fn validate(&self) -> Result<(), StrategyError> {
        Ok(())
    }
    fn generate(&self, view: &MarketView<'_>) -> Result<Signal, StrategyError> {
        let close = view
            .shortest()
            .and_then(|f| f.last())
            .map_or(Decimal::ONE, |c| c.close);
        let stop = close * Decimal::new(98, 2);
        let target = close * Decimal::new(104, 2);
        Signal::buy(close, stop, target, 0.8, vec![])
            .map_err(|e| StrategyError::View(e.to_string()))
    }
}

fn bench(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let symbol: Symbol = "XRP/USDT:USDT".parse().unwrap_or_else(|e| panic!("{e}"));
    let tfs = [Timeframe::M5, Timeframe::M15, Timeframe::H1];
    let risk = RiskConfig::default();
    let settings = ExecutionSettings::default();
    let rsi_bollinger = strategy::build("rsi_bollinger", &serde_json::Value::Null)
        .unwrap_or_else(|e| panic!("{e}"));

    let spec = |strategy: &'static dyn Strategy| -> CycleSpec<'static> {
        // Leaked once per bench setup: the spec borrows for 'static to keep the closure simple.
        let symbol: &'static Symbol = Box::leak(Box::new(symbol.clone()));
        let tfs: &'static [Timeframe] = Box::leak(Box::new(tfs));
        let risk: &'static RiskConfig = Box::leak(Box::new(risk.clone()));
        CycleSpec {
            subscription_id: 1,
            slot: at(T0),
            exchange_name: "paper",
            symbol,
            timeframes: tfs,
            candles: 100,
            leverage: 5,
            strategy,
            risk,
            now: at(T0),
        }
    };
    let analysis_only: &'static dyn Strategy = Box::leak(rsi_bollinger);
    let hold_spec = spec(analysis_only);
    let venue = paper();
    // The measured path must be the real one, not an early error.
    let probe = rt.block_on(run_cycle(
        venue.as_ref(),
        &NoCache,
        None,
        &hold_spec,
        &CycleState::default(),
        &NoGate,
        &settings,
    ));
    if let Err(e) = probe {
        panic!("analysis cycle fails: {e}");
    }
    let probe = rt.block_on(run_cycle(
        paper().as_ref(),
        &NoCache,
        None,
        &spec(Box::leak(Box::new(Enter))),
        &CycleState::default(),
        &NoGate,
        &settings,
    ));
    match probe {
        Ok(out) if out.execution.as_ref().is_some_and(|e| e.orders.len() == 3) => {}
        other => panic!("entry cycle did not place entry + SL + TP: {other:?}"),
    }
    c.bench_function(
        "cycle/paper rsi_bollinger 3 timeframes x 100 candles (no entry)",
        |b| {
            b.iter(|| {
                rt.block_on(run_cycle(
                    venue.as_ref(),
                    &NoCache,
                    None,
                    &hold_spec,
                    &CycleState::default(),
                    &NoGate,
                    &settings,
                ))
            })
        },
    );

    let enter_spec = spec(Box::leak(Box::new(Enter)));
    c.bench_function(
        "cycle/paper entry + stop-loss + take-profit, 3 timeframes x 100 candles",
        |b| {
            b.iter_batched(
                paper,
                |venue| {
                    rt.block_on(run_cycle(
                        venue.as_ref(),
                        &NoCache,
                        None,
                        &enter_spec,
                        &CycleState::default(),
                        &NoGate,
                        &settings,
                    ))
                },
                BatchSize::SmallInput,
            )
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
