//! Indicator and strategy throughput: the design target is every indicator for 3 timeframes x
//! 500 candles in well under a millisecond. Three 500-candle windows of the real 5m XRP/USDT
//! data stand in for the three timeframes (the work per candle does not depend on the interval).
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use tradefleet::bot::candles::read_csv;
use tradefleet::bot::indicators::{
    Ohlcv, atr, bollinger, ema, macd, rsi, sma, stochastic, volume_ratio,
};
use tradefleet::bot::strategy::{MarketView, build};
use tradefleet::domain::{Candle, Timeframe};

const WINDOW: usize = 500;

fn windows() -> Vec<Vec<Candle>> {
    let text = include_str!("../data/market/XRPUSDT-PERP-5m.csv");
    let candles = read_csv(text.as_bytes(), Utc::now()).unwrap().candles;
    [0, 700, candles.len() - WINDOW]
        .iter()
        .map(|&start| candles[start..start + WINDOW].to_vec())
        .collect()
}

/// Every indicator of the analysis snapshot, as full series.
fn all_indicators(c: &Ohlcv) -> f64 {
    let mut acc = 0.0;
    acc += sma(&c.close, 20).unwrap().last().unwrap_or(0.0);
    acc += ema(&c.close, 12).unwrap().last().unwrap_or(0.0);
    acc += ema(&c.close, 26).unwrap().last().unwrap_or(0.0);
    acc += rsi(&c.close, 14).unwrap().last().unwrap_or(0.0);
    acc += macd(&c.close, 12, 26, 9)
        .unwrap()
        .hist
        .last()
        .unwrap_or(0.0);
    acc += bollinger(&c.close, 20, 2.0)
        .unwrap()
        .upper
        .last()
        .unwrap_or(0.0);
    acc += atr(&c.high, &c.low, &c.close, 14)
        .unwrap()
        .last()
        .unwrap_or(0.0);
    acc += stochastic(&c.high, &c.low, &c.close, 14, 3, 3)
        .unwrap()
        .d
        .last()
        .unwrap_or(0.0);
    acc += volume_ratio(&c.volume, 20).unwrap().last().unwrap_or(0.0);
    acc
}

fn bench(c: &mut Criterion) {
    let windows = windows();
    let columns: Vec<Ohlcv> = windows
        .iter()
        .map(|w| Ohlcv::from_candles(w).unwrap())
        .collect();
    let frames: Vec<(Timeframe, &[Candle])> = [Timeframe::M5, Timeframe::M15, Timeframe::H1]
        .into_iter()
        .zip(&windows)
        .map(|(tf, w)| (tf, w.as_slice()))
        .collect();

    c.bench_function("indicators/3x500/all_series_from_candles", |b| {
        b.iter(|| {
            windows
                .iter()
                .map(|w| all_indicators(&Ohlcv::from_candles(black_box(w)).unwrap()))
                .sum::<f64>()
        })
    });
    c.bench_function("indicators/3x500/all_series_from_columns", |b| {
        b.iter(|| {
            columns
                .iter()
                .map(|c| all_indicators(black_box(c)))
                .sum::<f64>()
        })
    });
    c.bench_function("indicators/3x500/market_view_with_snapshots", |b| {
        b.iter(|| MarketView::new(black_box(&frames), None).unwrap())
    });

    let view = MarketView::new(&frames, None).unwrap();
    for name in ["rsi_bollinger", "mtf_trend"] {
        let strategy = build(name, &serde_json::Value::Null).unwrap();
        c.bench_function(&format!("strategy/{name}/generate"), |b| {
            b.iter(|| strategy.generate(black_box(&view)).unwrap())
        });
        c.bench_function(&format!("strategy/{name}/view_and_generate_3x500"), |b| {
            b.iter(|| {
                let view = MarketView::new(black_box(&frames), None).unwrap();
                strategy.generate(&view).unwrap()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
