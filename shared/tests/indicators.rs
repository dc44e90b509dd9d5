//! The indicators against TA-Lib on real market data: every value of every series, on the
//! bundled 5m and 1h XRP/USDT candles, compared with `fixtures/talib/reference_*.json`
//! (written by `fixtures/talib/gen_reference.py` from the same CSVs with the `talib` package),
//! and on the 5m candles aggregated to 15m here and in the script (which checks resampling).
//!
//! Tolerance rule: a value matches when `|ours - talib| <= 1e-6 * max(|talib|, 1e-4)`, i.e.
//! 1e-6 relative, turning into 1e-10 absolute for values below 1e-4 in magnitude (MACD lines and
//! histograms cross zero, where a relative test is meaningless). Undefined positions must match
//! exactly: TA-Lib's NaN (null in the JSON) <=> `None` here.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use chrono::Utc;
use serde_json::Value;
use tradefleet::bot::candles::{aggregate, read_csv};
use tradefleet::bot::indicators::{
    Ohlcv, SNAPSHOT_MIN_CANDLES, Series, atr, bollinger, ema, macd, rsi, sma, snapshot, stochastic,
    volume_ratio,
};
use tradefleet::bot::signal::Action;
use tradefleet::bot::strategy::{MarketView, build};
use tradefleet::domain::{Candle, Timeframe};

const RELATIVE: f64 = 1e-6;
const FLOOR: f64 = 1e-4;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Candles and TA-Lib reference for `label`: `5m`, `1h`, or `15m_from_5m`.
fn load(label: &str) -> (Vec<Candle>, Value) {
    let source = if label == "15m_from_5m" { "5m" } else { label };
    let csv = manifest().join(format!("data/market/XRPUSDT-PERP-{source}.csv"));
    let file = std::fs::File::open(&csv).unwrap();
    let series = read_csv(file, Utc::now()).unwrap();
    let candles = if label == "15m_from_5m" {
        aggregate(&series.candles, Timeframe::M5, Timeframe::M15).unwrap()
    } else {
        series.candles
    };
    let json = manifest().join(format!("tests/fixtures/talib/reference_{label}.json"));
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(reference["rows"].as_u64().unwrap() as usize, candles.len());
    for (candle, time) in candles
        .iter()
        .zip(reference["open_time"].as_array().unwrap())
    {
        assert_eq!(candle.open_time.timestamp_millis(), time.as_i64().unwrap());
    }
    (candles, reference)
}

fn matches(ours: f64, talib: f64) -> bool {
    (ours - talib).abs() <= RELATIVE * talib.abs().max(FLOOR)
}

fn reference_series(reference: &Value, name: &str) -> Vec<Option<f64>> {
    reference["series"][name]
        .as_array()
        .unwrap_or_else(|| panic!("reference has no series {name}"))
        .iter()
        .map(Value::as_f64)
        .collect()
}

/// Compares one series value by value; returns how many defined values were compared.
fn compare(tf: &str, name: &str, ours: &Series, reference: &Value) -> usize {
    let want = reference_series(reference, name);
    assert_eq!(ours.len(), want.len(), "{tf} {name}: length");
    let mut compared = 0;
    for (i, (got, want)) in ours.iter().zip(&want).enumerate() {
        match (got, want) {
            (None, None) => {}
            (Some(g), Some(w)) => {
                assert!(matches(g, *w), "{tf} {name}[{i}]: ours {g}, TA-Lib {w}");
                compared += 1;
            }
            _ => panic!("{tf} {name}[{i}]: ours {got:?}, TA-Lib {want:?} (lookback differs)"),
        }
    }
    compared
}

fn all_indicators_match(tf: &str) {
    let (candles, reference) = load(tf);
    let c = Ohlcv::from_candles(&candles).unwrap();
    let m = macd(&c.close, 12, 26, 9).unwrap();
    let bands = bollinger(&c.close, 20, 2.0).unwrap();
    let stoch = stochastic(&c.high, &c.low, &c.close, 14, 3, 3).unwrap();
    let checks: Vec<(&str, Series)> = vec![
        ("sma_20", sma(&c.close, 20).unwrap()),
        ("ema_12", ema(&c.close, 12).unwrap()),
        ("ema_20", ema(&c.close, 20).unwrap()),
        ("ema_26", ema(&c.close, 26).unwrap()),
        ("ema_50", ema(&c.close, 50).unwrap()),
        ("rsi_14", rsi(&c.close, 14).unwrap()),
        ("macd", m.macd),
        ("macd_signal", m.signal),
        ("macd_hist", m.hist),
        ("bb_upper", bands.upper),
        ("bb_middle", bands.middle),
        ("bb_lower", bands.lower),
        ("atr_14", atr(&c.high, &c.low, &c.close, 14).unwrap()),
        ("stoch_k", stoch.k),
        ("stoch_d", stoch.d),
        ("volume_ratio", volume_ratio(&c.volume, 20).unwrap()),
    ];
    let names: Vec<&str> = checks.iter().map(|(n, _)| *n).collect();
    let in_reference: Vec<&str> = reference["series"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for name in &in_reference {
        assert!(
            names.contains(name),
            "reference series {name} is not checked"
        );
    }
    for (name, series) in &checks {
        let compared = compare(tf, name, series, &reference);
        // Every position after the lookback holds a value on this data.
        assert_eq!(compared, candles.len() - series.lookback(), "{tf} {name}");
        assert!(compared > 0, "{tf} {name}: nothing compared");
    }
}

#[test]
fn every_indicator_matches_talib_on_5m() {
    all_indicators_match("5m");
}

#[test]
fn every_indicator_matches_talib_on_1h() {
    all_indicators_match("1h");
}

#[test]
fn every_indicator_matches_talib_on_15m_aggregated_from_5m() {
    all_indicators_match("15m_from_5m");
}

#[test]
fn lookbacks_are_talibs() {
    let (candles, _) = load("1h");
    let c = Ohlcv::from_candles(&candles).unwrap();
    assert_eq!(sma(&c.close, 20).unwrap().lookback(), 19);
    assert_eq!(ema(&c.close, 26).unwrap().lookback(), 25);
    assert_eq!(rsi(&c.close, 14).unwrap().lookback(), 14);
    assert_eq!(macd(&c.close, 12, 26, 9).unwrap().signal.lookback(), 33);
    assert_eq!(atr(&c.high, &c.low, &c.close, 14).unwrap().lookback(), 14);
    let stoch = stochastic(&c.high, &c.low, &c.close, 14, 3, 3).unwrap();
    assert_eq!((stoch.k.lookback(), stoch.d.lookback()), (17, 17));
}

/// The snapshot of a prefix equals the reference values at the prefix's last index, for the
/// shortest allowed prefix and a spread of others.
#[test]
fn snapshots_match_talib_at_every_sampled_candle() {
    for tf in ["5m", "1h", "15m_from_5m"] {
        let (candles, reference) = load(tf);
        let ends: Vec<usize> = (SNAPSHOT_MIN_CANDLES..=candles.len())
            .step_by(7)
            .chain([candles.len()])
            .collect();
        for end in ends {
            let s = snapshot(Timeframe::M5, &candles[..end]).unwrap();
            let i = end - 1;
            let value = |name: &str| reference_series(&reference, name)[i].unwrap();
            let fields = [
                ("rsi_14", s.rsi_14),
                ("sma_20", s.sma_20),
                ("ema_12", s.ema_12),
                ("ema_26", s.ema_26),
                ("macd", s.macd),
                ("macd_signal", s.macd_signal),
                ("macd_hist", s.macd_hist),
                ("bb_upper", s.bb_upper),
                ("bb_middle", s.bb_middle),
                ("bb_lower", s.bb_lower),
                ("atr_14", s.atr_14),
                ("stoch_k", s.stoch_k),
                ("stoch_d", s.stoch_d),
                ("volume_ratio", s.volume_ratio.unwrap()),
            ];
            for (name, ours) in fields {
                assert!(
                    matches(ours, value(name)),
                    "{tf} snapshot at {i}: {name} ours {ours}, TA-Lib {}",
                    value(name)
                );
            }
            assert_eq!(s.close, candles[i].close);
            assert_eq!(
                s.time.timestamp_millis(),
                reference["open_time"][i].as_i64().unwrap()
            );
        }
    }
}

#[test]
fn snapshot_ignores_the_candle_still_forming() {
    let (mut candles, _) = load("1h");
    let closed = snapshot(Timeframe::H1, &candles[..99]).unwrap();
    candles[99].closed = false;
    assert_eq!(snapshot(Timeframe::H1, &candles).unwrap(), closed);
    candles[50].closed = false;
    let err = snapshot(Timeframe::H1, &candles[..99]).unwrap_err();
    assert!(err.to_string().starts_with("candle 50 "), "{err}");
}

#[test]
fn too_few_candles_is_an_error_not_a_panic() {
    let (candles, _) = load("1h");
    for n in [0, 1, SNAPSHOT_MIN_CANDLES - 1] {
        let err = snapshot(Timeframe::H1, &candles[..n]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("analysis snapshot: need at least 34 closed candles, got {n}")
        );
    }
    let c = Ohlcv::from_candles(&candles[..5]).unwrap();
    assert!(rsi(&c.close, 14).unwrap().iter().all(|v| v.is_none()));
    assert!(macd(&c.close, 12, 26, 9).unwrap().hist.last().is_none());
}

#[test]
fn snapshot_serializes_every_indicator_key() {
    let (candles, _) = load("1h");
    let json = serde_json::to_value(snapshot(Timeframe::H1, &candles).unwrap()).unwrap();
    for key in [
        "timeframe",
        "time",
        "close",
        "rsi_14",
        "sma_20",
        "ema_12",
        "ema_26",
        "macd",
        "macd_signal",
        "macd_hist",
        "bb_upper",
        "bb_middle",
        "bb_lower",
        "atr_14",
        "stoch_k",
        "stoch_d",
        "volume_ratio",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    assert_eq!(json["timeframe"], "1h");
}

/// `rsi_bollinger` without a position, run at every candle of the real 5m data, decides exactly
/// what the TA-Lib values say it should.
#[test]
fn rsi_bollinger_follows_the_talib_values_on_real_data() {
    let (candles, reference) = load("5m");
    let rsi_ref = reference_series(&reference, "rsi_14");
    let upper = reference_series(&reference, "bb_upper");
    let lower = reference_series(&reference, "bb_lower");
    let strategy = build("rsi_bollinger", &Value::Null).unwrap();
    let (mut buys, mut sells) = (0, 0);
    for end in SNAPSHOT_MIN_CANDLES..=candles.len() {
        let i = end - 1;
        let view = MarketView::new(&[(Timeframe::M5, &candles[..end])], None).unwrap();
        let signal = strategy.generate(&view).unwrap();
        let close: f64 = candles[i].close.try_into().unwrap();
        let (r, u, l) = (rsi_ref[i].unwrap(), upper[i].unwrap(), lower[i].unwrap());
        let expected = if r < 30.0 && close <= l {
            buys += 1;
            Action::Buy
        } else if r > 70.0 && close >= u {
            sells += 1;
            Action::Sell
        } else {
            Action::Hold
        };
        assert_eq!(
            signal.action(),
            expected,
            "candle {i}: {:?}",
            signal.reasons()
        );
    }
    assert!(buys > 0 && sells > 0, "buys {buys}, sells {sells}");
}

mod properties {
    //! Arbitrary input never panics, values stay in range, and the fast O(n) passes agree with
    //! naive per-window recomputation.
    use proptest::prelude::*;

    use super::*;

    fn prices() -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec(0.0001f64..100_000.0, 0..120)
    }

    proptest! {
        #[test]
        fn sma_equals_the_naive_window_mean(input in prices(), period in 1usize..30) {
            let s = sma(&input, period).unwrap();
            prop_assert_eq!(s.len(), input.len());
            for (i, v) in s.iter().enumerate() {
                if i + 1 < period {
                    prop_assert!(v.is_none());
                } else {
                    let window = &input[i + 1 - period..=i];
                    let mean = window.iter().sum::<f64>() / period as f64;
                    let v = v.unwrap();
                    prop_assert!((v - mean).abs() <= 1e-9 * mean.abs().max(1.0), "{} vs {}", v, mean);
                }
            }
        }

        #[test]
        fn oscillators_stay_within_0_and_100(
            closes in prices(),
            spread in prop::collection::vec(0.0f64..0.05, 120),
            period in 2usize..20,
        ) {
            let high: Vec<f64> = closes.iter().zip(&spread).map(|(c, s)| c * (1.0 + s)).collect();
            let low: Vec<f64> = closes.iter().zip(&spread).map(|(c, s)| c * (1.0 - s)).collect();
            for v in rsi(&closes, period).unwrap().iter().flatten() {
                prop_assert!((0.0..=100.0).contains(&v), "rsi {}", v);
            }
            let st = stochastic(&high, &low, &closes, period, 3, 3).unwrap();
            for v in st.k.iter().chain(st.d.iter()).flatten() {
                prop_assert!((-1e-9..=100.0 + 1e-9).contains(&v), "stoch {}", v);
            }
            let b = bollinger(&closes, period, 2.0).unwrap();
            for ((u, m), l) in b.upper.iter().zip(b.middle.iter()).zip(b.lower.iter()) {
                if let (Some(u), Some(m), Some(l)) = (u, m, l) {
                    prop_assert!(l <= m + 1e-9 * m.abs() && m <= u + 1e-9 * m.abs());
                }
            }
            for v in atr(&high, &low, &closes, period).unwrap().iter().flatten() {
                prop_assert!(v >= 0.0);
            }
        }

        #[test]
        fn stochastic_extremes_match_a_naive_scan(
            closes in prop::collection::vec(1.0f64..2.0, 20..80),
            period in 1usize..15,
        ) {
            // With fast %K only (slow periods 1), %K is the raw position in the window's range.
            let high: Vec<f64> = closes.iter().map(|c| c + 0.1).collect();
            let low: Vec<f64> = closes.iter().map(|c| c - 0.1).collect();
            let k = stochastic(&high, &low, &closes, period, 1, 1).unwrap().k;
            for i in period - 1..closes.len() {
                let hh = high[i + 1 - period..=i].iter().cloned().fold(f64::MIN, f64::max);
                let ll = low[i + 1 - period..=i].iter().cloned().fold(f64::MAX, f64::min);
                let want = (closes[i] - ll) / (hh - ll) * 100.0;
                prop_assert!((k.get(i).unwrap() - want).abs() < 1e-9);
            }
        }
    }
}
