//! `rsi_bollinger`: mean reversion. Buy an oversold close at or below the lower Bollinger
//! Band, sell an overbought close at or above the upper band, close when price has reverted.
//!
//! Rules, on the last closed candle of the trading frame:
//! - no position: BUY when RSI < `oversold` and close <= lower band; SELL when RSI >
//!   `overbought` and close >= upper band; else HOLD.
//! - long: CLOSE when close >= middle band (reverted) or RSI >= `overbought`; else HOLD.
//! - short: CLOSE when close <= middle band or RSI <= `oversold`; else HOLD.
//!
//! Confidence: an entry is `0.5 + 0.25 * rsi_depth + 0.25 * band_depth`, where `rsi_depth` is
//! how far RSI is past its threshold as a share of the room left (`(oversold - rsi) /
//! oversold`, `(rsi - overbought) / (100 - overbought)`) and `band_depth` is how far the close
//! is beyond the band in half band-widths, both clamped to 0..=1. A CLOSE is 0.75 with one exit
//! condition and 1.0 with both. HOLD is 0. Stop-loss and take-profit are `stop_loss_atr` and
//! `take_profit_atr` ATRs from the entry (the last close).

use rust_decimal::Decimal;
use serde::Deserialize;

use super::{
    MarketView, Strategy, StrategyError, atr_multiple, bracket, indicator_error, last_value,
    period, pick_frame, require, signal_error, unit,
};
use crate::bot::indicators::{atr, bollinger, rsi};
use crate::bot::signal::Signal;
use crate::domain::{PositionSide, Timeframe};

pub(super) const NAME: &str = "rsi_bollinger";

/// Configuration of [`RsiBollinger`]; every field has a default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RsiBollingerConfig {
    /// Frame to trade on; default the shortest in the view.
    pub timeframe: Option<Timeframe>,
    pub rsi_period: usize,
    pub oversold: f64,
    pub overbought: f64,
    pub bb_period: usize,
    pub bb_deviations: f64,
    pub atr_period: usize,
    pub stop_loss_atr: Decimal,
    pub take_profit_atr: Decimal,
}

impl Default for RsiBollingerConfig {
    fn default() -> Self {
        Self {
            timeframe: None,
            rsi_period: 14,
            oversold: 30.0,
            overbought: 70.0,
            bb_period: 20,
            bb_deviations: 2.0,
            atr_period: 14,
            stop_loss_atr: Decimal::new(15, 1),
            take_profit_atr: Decimal::from(3),
        }
    }
}

/// RSI + Bollinger Band mean reversion (see the module docs for the rules).
#[derive(Debug, Clone)]
pub struct RsiBollinger {
    config: RsiBollingerConfig,
}

impl RsiBollinger {
    pub fn new(config: RsiBollingerConfig) -> Self {
        Self { config }
    }
}

impl Strategy for RsiBollinger {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self) -> Result<(), StrategyError> {
        let c = &self.config;
        period(NAME, "rsi_period", c.rsi_period, 2)?;
        period(NAME, "bb_period", c.bb_period, 2)?;
        period(NAME, "atr_period", c.atr_period, 1)?;
        require(
            NAME,
            "oversold",
            c.oversold > 0.0 && c.oversold < c.overbought,
            || {
                format!(
                    "must be above 0 and below overbought ({}), got {}",
                    c.overbought, c.oversold
                )
            },
        )?;
        require(NAME, "overbought", c.overbought < 100.0, || {
            format!("must be below 100, got {}", c.overbought)
        })?;
        require(
            NAME,
            "bb_deviations",
            c.bb_deviations > 0.0 && c.bb_deviations <= 10.0,
            || format!("must be above 0 and at most 10, got {}", c.bb_deviations),
        )?;
        atr_multiple(NAME, "stop_loss_atr", c.stop_loss_atr)?;
        atr_multiple(NAME, "take_profit_atr", c.take_profit_atr)
    }

    fn timeframes(&self) -> Vec<Timeframe> {
        self.config.timeframe.into_iter().collect()
    }

    fn generate(&self, view: &MarketView<'_>) -> Result<Signal, StrategyError> {
        let c = &self.config;
        let frame = pick_frame(NAME, view, c.timeframe)?;
        let cols = frame.columns();
        let err = indicator_error(frame);
        let rsi_now = last_value(
            frame,
            "RSI",
            c.rsi_period + 1,
            rsi(&cols.close, c.rsi_period).map_err(&err)?.last(),
        )?;
        let bands = bollinger(&cols.close, c.bb_period, c.bb_deviations).map_err(&err)?;
        let upper = last_value(frame, "Bollinger Bands", c.bb_period, bands.upper.last())?;
        let middle = last_value(frame, "Bollinger Bands", c.bb_period, bands.middle.last())?;
        let lower = last_value(frame, "Bollinger Bands", c.bb_period, bands.lower.last())?;
        let atr_now = last_value(
            frame,
            "ATR",
            c.atr_period + 1,
            atr(&cols.high, &cols.low, &cols.close, c.atr_period)
                .map_err(&err)?
                .last(),
        )?;
        let entry = frame.snapshot().close;
        let close = cols.close.last().copied().unwrap_or(f64::NAN);
        let tf = frame.timeframe();
        let rsi_text = format!("{tf} RSI({}) {rsi_now:.2}", c.rsi_period);
        let signal_err = signal_error(NAME);

        match view.position().map(|p| p.side) {
            Some(PositionSide::Long) => {
                let reverted = close >= middle;
                let exhausted = rsi_now >= c.overbought;
                if reverted || exhausted {
                    let mut reasons = Vec::new();
                    if reverted {
                        reasons.push(format!(
                            "long exit: close {entry} >= middle band {middle:.6}"
                        ));
                    }
                    if exhausted {
                        reasons.push(format!(
                            "long exit: {rsi_text} >= overbought {}",
                            c.overbought
                        ));
                    }
                    let confidence = if reverted && exhausted { 1.0 } else { 0.75 };
                    return Signal::close(entry, confidence, reasons).map_err(signal_err);
                }
                Signal::hold(
                    entry,
                    0.0,
                    vec![format!(
                        "long open: close {entry} < middle band {middle:.6} and {rsi_text} < {}",
                        c.overbought
                    )],
                )
                .map_err(signal_err)
            }
            Some(PositionSide::Short) => {
                let reverted = close <= middle;
                let exhausted = rsi_now <= c.oversold;
                if reverted || exhausted {
                    let mut reasons = Vec::new();
                    if reverted {
                        reasons.push(format!(
                            "short exit: close {entry} <= middle band {middle:.6}"
                        ));
                    }
                    if exhausted {
                        reasons.push(format!("short exit: {rsi_text} <= oversold {}", c.oversold));
                    }
                    let confidence = if reverted && exhausted { 1.0 } else { 0.75 };
                    return Signal::close(entry, confidence, reasons).map_err(signal_err);
                }
                Signal::hold(
                    entry,
                    0.0,
                    vec![format!(
                        "short open: close {entry} > middle band {middle:.6} and {rsi_text} > {}",
                        c.oversold
                    )],
                )
                .map_err(signal_err)
            }
            None => {
                let half_width = (upper - lower) / 2.0;
                let band_depth = |beyond: f64| {
                    if half_width > 0.0 {
                        unit(beyond / half_width)
                    } else {
                        0.0
                    }
                };
                if rsi_now < c.oversold && close <= lower {
                    let confidence = 0.5
                        + 0.25 * unit((c.oversold - rsi_now) / c.oversold)
                        + 0.25 * band_depth(lower - close);
                    let (stop, take) = bracket(
                        NAME,
                        entry,
                        atr_now,
                        c.stop_loss_atr,
                        c.take_profit_atr,
                        true,
                    )?;
                    return Signal::buy(
                        entry,
                        stop,
                        take,
                        confidence,
                        vec![
                            format!("{rsi_text} < oversold {}", c.oversold),
                            format!("close {entry} <= lower band {lower:.6}"),
                        ],
                    )
                    .map_err(signal_err);
                }
                if rsi_now > c.overbought && close >= upper {
                    let confidence = 0.5
                        + 0.25 * unit((rsi_now - c.overbought) / (100.0 - c.overbought))
                        + 0.25 * band_depth(close - upper);
                    let (stop, take) = bracket(
                        NAME,
                        entry,
                        atr_now,
                        c.stop_loss_atr,
                        c.take_profit_atr,
                        false,
                    )?;
                    return Signal::sell(
                        entry,
                        stop,
                        take,
                        confidence,
                        vec![
                            format!("{rsi_text} > overbought {}", c.overbought),
                            format!("close {entry} >= upper band {upper:.6}"),
                        ],
                    )
                    .map_err(signal_err);
                }
                Signal::hold(
                    entry,
                    0.0,
                    vec![format!(
                        "no entry: {rsi_text} (oversold {} / overbought {}), close {entry} within bands {lower:.6}..{upper:.6}",
                        c.oversold, c.overbought
                    )],
                )
                .map_err(signal_err)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::bot::signal::Action;
    use crate::bot::strategy::build;
    use crate::bot::strategy::test_support::{candles, position, real};
    use crate::domain::{Candle, Position};
    use rust_decimal_macros::dec;

    /// 40 candles oscillating around 100, then `tail`.
    fn series(tail: &[f64]) -> Vec<Candle> {
        let mut closes: Vec<f64> = (0..40)
            .map(|i| if i % 2 == 0 { 100.0 } else { 101.0 })
            .collect();
        closes.extend_from_slice(tail);
        candles(Timeframe::M5, &closes)
    }

    const CRASH: [f64; 5] = [99.0, 97.0, 95.0, 92.0, 88.0];
    const SPIKE: [f64; 5] = [102.0, 104.0, 106.0, 109.0, 113.0];

    fn decide(candles: &[Candle], position: Option<&Position>) -> Signal {
        let view = MarketView::new(&[(Timeframe::M5, candles)], position).unwrap();
        build(NAME, &serde_json::Value::Null)
            .unwrap()
            .generate(&view)
            .unwrap()
    }

    #[test]
    fn buys_an_oversold_close_below_the_lower_band() {
        let s = decide(&series(&CRASH), None);
        assert_eq!(s.action(), Action::Buy, "{:?}", s.reasons());
        assert!(s.confidence() > 0.5 && s.confidence() <= 1.0);
        assert_eq!(s.entry(), dec!(88));
        let (stop, take) = (s.stop_loss().unwrap(), s.take_profit().unwrap());
        assert!(stop < s.entry() && s.entry() < take);
        // Stop at 1.5 ATR, take-profit at 3 ATR: the take-profit is twice as far.
        let ratio = (take - s.entry()) / (s.entry() - stop);
        assert!((ratio - dec!(2)).abs() < dec!(0.0001), "{ratio}");
    }

    #[test]
    fn sells_an_overbought_close_above_the_upper_band() {
        let s = decide(&series(&SPIKE), None);
        assert_eq!(s.action(), Action::Sell, "{:?}", s.reasons());
        assert!(s.stop_loss().unwrap() > s.entry());
        assert!(s.take_profit().unwrap() < s.entry());
    }

    #[test]
    fn holds_inside_the_bands() {
        let s = decide(&series(&[100.0, 101.0]), None);
        assert_eq!(s.action(), Action::Hold);
        assert_eq!(s.confidence(), 0.0);
        assert_eq!(s.stop_loss(), None);
    }

    #[test]
    fn a_flat_market_is_not_oversold() {
        let flat = candles(Timeframe::M5, &[1.0; 50]);
        assert_eq!(decide(&flat, None).action(), Action::Hold);
    }

    #[test]
    fn closes_a_long_once_price_reverts_and_holds_it_before() {
        let long = position(PositionSide::Long);
        let s = decide(&series(&SPIKE), Some(&long));
        assert_eq!(s.action(), Action::Close);
        assert_eq!(
            s.confidence(),
            1.0,
            "reverted and overbought: {:?}",
            s.reasons()
        );
        let s = decide(&series(&CRASH), Some(&long));
        assert_eq!(s.action(), Action::Hold, "{:?}", s.reasons());
    }

    #[test]
    fn closes_a_short_once_price_reverts() {
        let short = position(PositionSide::Short);
        assert_eq!(
            decide(&series(&CRASH), Some(&short)).action(),
            Action::Close
        );
        assert_eq!(decide(&series(&SPIKE), Some(&short)).action(), Action::Hold);
    }

    #[test]
    fn thresholds_come_from_the_config() {
        // With oversold at 5 the crash is not deep enough to buy.
        let view_candles = series(&CRASH);
        let view = MarketView::new(&[(Timeframe::M5, &view_candles)], None).unwrap();
        let strict = build(NAME, &serde_json::json!({"oversold": 5, "overbought": 95})).unwrap();
        assert_eq!(strict.generate(&view).unwrap().action(), Action::Hold);
    }

    #[test]
    fn real_data_gives_valid_signals_of_every_entry_kind() {
        let candles = real(Timeframe::M5);
        let strategy = build(NAME, &serde_json::Value::Null).unwrap();
        let mut seen = std::collections::HashSet::new();
        for end in (200..=candles.len()).step_by(3) {
            let window = &candles[end - 200..end];
            let view = MarketView::new(&[(Timeframe::M5, window)], None).unwrap();
            let s = strategy.generate(&view).unwrap();
            assert!((0.0..=1.0).contains(&s.confidence()));
            assert!(!s.reasons().is_empty());
            seen.insert(s.action());
        }
        assert!(
            seen.contains(&Action::Buy) && seen.contains(&Action::Sell),
            "{seen:?}"
        );
        assert!(seen.contains(&Action::Hold));
    }
}
