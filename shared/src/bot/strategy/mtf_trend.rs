//! `mtf_trend`: trade pullback recoveries in the direction of the higher-timeframe trend.
//!
//! Trend (on `trend_timeframe`, default 1h): UP when EMA(`fast_ema`) > EMA(`slow_ema`) and the
//! close is above the slow EMA; DOWN when both are below; else no trend.
//! Entry (on `entry_timeframe`, default the shortest frame in the view, which must be shorter
//! than the trend frame):
//! - BUY in an UP trend when the MACD histogram is positive and rising and RSI is within
//!   `rsi_floor..=rsi_ceiling` (momentum back, not yet overbought);
//! - SELL in a DOWN trend, mirrored (histogram negative and falling, RSI within
//!   `100 - rsi_ceiling..=100 - rsi_floor`);
//! - a long is CLOSEd when the trend EMAs cross down (fast < slow) or RSI >= `exit_rsi`; a short
//!   when they cross up or RSI <= `100 - exit_rsi`; otherwise HOLD.
//!
//! Confidence: an entry is `0.5 + 0.25 * trend_strength + 0.25 * momentum`, where
//! `trend_strength` is the EMA gap in trend-frame ATR(14)s and `momentum` is RSI's position
//! within its entry band, both clamped to 0..=1. A CLOSE on a trend reversal is 1.0, on RSI
//! exhaustion alone 0.75. HOLD is 0. Stop-loss and take-profit are ATR multiples of the entry
//! frame.

use rust_decimal::Decimal;
use serde::Deserialize;

use super::{
    Frame, MarketView, Strategy, StrategyError, atr_multiple, bracket, indicator_error, last_value,
    period, pick_frame, require, signal_error, unit,
};
use crate::bot::indicators::{atr, ema, macd, rsi};
use crate::bot::signal::Signal;
use crate::domain::{PositionSide, Timeframe};

pub(super) const NAME: &str = "mtf_trend";

/// Configuration of [`MtfTrend`]; every field has a default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MtfTrendConfig {
    pub trend_timeframe: Timeframe,
    /// Frame to time entries on; default the shortest in the view.
    pub entry_timeframe: Option<Timeframe>,
    pub fast_ema: usize,
    pub slow_ema: usize,
    pub rsi_period: usize,
    pub rsi_floor: f64,
    pub rsi_ceiling: f64,
    pub exit_rsi: f64,
    pub macd_fast: usize,
    pub macd_slow: usize,
    pub macd_signal: usize,
    pub atr_period: usize,
    pub stop_loss_atr: Decimal,
    pub take_profit_atr: Decimal,
}

impl Default for MtfTrendConfig {
    fn default() -> Self {
        Self {
            trend_timeframe: Timeframe::H1,
            entry_timeframe: None,
            fast_ema: 20,
            slow_ema: 50,
            rsi_period: 14,
            rsi_floor: 50.0,
            rsi_ceiling: 70.0,
            exit_rsi: 80.0,
            macd_fast: 12,
            macd_slow: 26,
            macd_signal: 9,
            atr_period: 14,
            stop_loss_atr: Decimal::from(2),
            take_profit_atr: Decimal::from(3),
        }
    }
}

/// Higher-timeframe trend filter with lower-timeframe RSI/MACD entries (see the module docs).
#[derive(Debug, Clone)]
pub struct MtfTrend {
    config: MtfTrendConfig,
}

impl MtfTrend {
    pub fn new(config: MtfTrendConfig) -> Self {
        Self { config }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trend {
    Up,
    Down,
    None,
}

/// The trend frame's reading.
#[derive(Debug)]
struct TrendReading {
    trend: Trend,
    fast: f64,
    slow: f64,
    /// Gap between the EMAs in trend-frame ATRs, 0..=1.
    strength: f64,
}

impl MtfTrend {
    fn read_trend(&self, frame: &Frame<'_>) -> Result<TrendReading, StrategyError> {
        let c = &self.config;
        let cols = frame.columns();
        let err = indicator_error(frame);
        let fast = last_value(
            frame,
            "trend EMA",
            c.fast_ema,
            ema(&cols.close, c.fast_ema).map_err(&err)?.last(),
        )?;
        let slow = last_value(
            frame,
            "trend EMA",
            c.slow_ema,
            ema(&cols.close, c.slow_ema).map_err(&err)?.last(),
        )?;
        let close = cols.close.last().copied().unwrap_or(f64::NAN);
        let trend = if fast > slow && close > slow {
            Trend::Up
        } else if fast < slow && close < slow {
            Trend::Down
        } else {
            Trend::None
        };
        let atr = frame.snapshot().atr_14;
        let strength = if atr > 0.0 {
            unit((fast - slow).abs() / atr)
        } else {
            0.0
        };
        Ok(TrendReading {
            trend,
            fast,
            slow,
            strength,
        })
    }
}

impl Strategy for MtfTrend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self) -> Result<(), StrategyError> {
        let c = &self.config;
        period(NAME, "fast_ema", c.fast_ema, 2)?;
        require(NAME, "slow_ema", c.slow_ema > c.fast_ema, || {
            format!(
                "must be longer than fast_ema ({}), got {}",
                c.fast_ema, c.slow_ema
            )
        })?;
        period(NAME, "slow_ema", c.slow_ema, 3)?;
        if let Some(entry) = c.entry_timeframe {
            require(NAME, "entry_timeframe", entry < c.trend_timeframe, || {
                format!(
                    "must be shorter than trend_timeframe ({}), got {entry}",
                    c.trend_timeframe
                )
            })?;
        }
        period(NAME, "rsi_period", c.rsi_period, 2)?;
        require(
            NAME,
            "rsi_floor",
            c.rsi_floor > 0.0 && c.rsi_floor < c.rsi_ceiling,
            || {
                format!(
                    "must be above 0 and below rsi_ceiling ({}), got {}",
                    c.rsi_ceiling, c.rsi_floor
                )
            },
        )?;
        require(
            NAME,
            "exit_rsi",
            c.exit_rsi > c.rsi_ceiling && c.exit_rsi < 100.0,
            || {
                format!(
                    "must be above rsi_ceiling ({}) and below 100, got {}",
                    c.rsi_ceiling, c.exit_rsi
                )
            },
        )?;
        period(NAME, "macd_fast", c.macd_fast, 2)?;
        require(NAME, "macd_slow", c.macd_slow > c.macd_fast, || {
            format!(
                "must be longer than macd_fast ({}), got {}",
                c.macd_fast, c.macd_slow
            )
        })?;
        period(NAME, "macd_slow", c.macd_slow, 3)?;
        period(NAME, "macd_signal", c.macd_signal, 1)?;
        period(NAME, "atr_period", c.atr_period, 1)?;
        atr_multiple(NAME, "stop_loss_atr", c.stop_loss_atr)?;
        atr_multiple(NAME, "take_profit_atr", c.take_profit_atr)
    }

    fn timeframes(&self) -> Vec<Timeframe> {
        let mut frames = vec![self.config.trend_timeframe];
        frames.extend(self.config.entry_timeframe);
        frames
    }

    fn generate(&self, view: &MarketView<'_>) -> Result<Signal, StrategyError> {
        let c = &self.config;
        let trend_frame = pick_frame(NAME, view, Some(c.trend_timeframe))?;
        let entry_frame = pick_frame(NAME, view, c.entry_timeframe)?;
        if entry_frame.timeframe() >= trend_frame.timeframe() {
            return Err(StrategyError::View(format!(
                "{NAME}: entry timeframe {} must be shorter than trend timeframe {}",
                entry_frame.timeframe(),
                trend_frame.timeframe()
            )));
        }
        let trend = self.read_trend(trend_frame)?;

        let cols = entry_frame.columns();
        let err = indicator_error(entry_frame);
        let rsi_now = last_value(
            entry_frame,
            "RSI",
            c.rsi_period + 1,
            rsi(&cols.close, c.rsi_period).map_err(&err)?.last(),
        )?;
        let m = macd(&cols.close, c.macd_fast, c.macd_slow, c.macd_signal).map_err(&err)?;
        let macd_needed = c.macd_slow + c.macd_signal;
        let hist = last_value(entry_frame, "MACD", macd_needed, m.hist.last())?;
        let hist_before = last_value(entry_frame, "MACD", macd_needed, m.hist.from_end(1))?;
        let atr_now = last_value(
            entry_frame,
            "ATR",
            c.atr_period + 1,
            atr(&cols.high, &cols.low, &cols.close, c.atr_period)
                .map_err(&err)?
                .last(),
        )?;
        let entry = entry_frame.snapshot().close;
        let (ttf, etf) = (trend_frame.timeframe(), entry_frame.timeframe());
        let trend_text = format!(
            "{ttf} EMA({}) {:.6} vs EMA({}) {:.6}",
            c.fast_ema, trend.fast, c.slow_ema, trend.slow
        );
        let rsi_text = format!("{etf} RSI({}) {rsi_now:.2}", c.rsi_period);
        let macd_text = format!("{etf} MACD histogram {hist:.6} (previous {hist_before:.6})");
        let signal_err = signal_error(NAME);

        let exit = |reversed: bool, exhausted: bool, side: &str| {
            let mut reasons = Vec::new();
            if reversed {
                reasons.push(format!("{side} exit: trend reversed, {trend_text}"));
            }
            if exhausted {
                reasons.push(format!("{side} exit: {rsi_text} past exit level"));
            }
            let confidence = if reversed { 1.0 } else { 0.75 };
            Signal::close(entry, confidence, reasons).map_err(&signal_err)
        };
        let hold = |reason: String| Signal::hold(entry, 0.0, vec![reason]).map_err(&signal_err);

        match view.position().map(|p| p.side) {
            Some(PositionSide::Long) => {
                let reversed = trend.fast < trend.slow;
                let exhausted = rsi_now >= c.exit_rsi;
                if reversed || exhausted {
                    return exit(reversed, exhausted, "long");
                }
                hold(format!(
                    "long open: {trend_text}, {rsi_text} < {}",
                    c.exit_rsi
                ))
            }
            Some(PositionSide::Short) => {
                let reversed = trend.fast > trend.slow;
                let exhausted = rsi_now <= 100.0 - c.exit_rsi;
                if reversed || exhausted {
                    return exit(reversed, exhausted, "short");
                }
                hold(format!(
                    "short open: {trend_text}, {rsi_text} > {}",
                    100.0 - c.exit_rsi
                ))
            }
            None => {
                let band = c.rsi_ceiling - c.rsi_floor;
                match trend.trend {
                    Trend::Up
                        if hist > 0.0
                            && hist > hist_before
                            && (c.rsi_floor..=c.rsi_ceiling).contains(&rsi_now) =>
                    {
                        let momentum = unit((rsi_now - c.rsi_floor) / band);
                        let confidence = 0.5 + 0.25 * trend.strength + 0.25 * momentum;
                        let (stop, take) = bracket(
                            NAME,
                            entry,
                            atr_now,
                            c.stop_loss_atr,
                            c.take_profit_atr,
                            true,
                        )?;
                        Signal::buy(
                            entry,
                            stop,
                            take,
                            confidence,
                            vec![
                                format!("uptrend: {trend_text}, close above the slow EMA"),
                                format!("{macd_text}: positive and rising"),
                                format!("{rsi_text} within {}..={}", c.rsi_floor, c.rsi_ceiling),
                            ],
                        )
                        .map_err(&signal_err)
                    }
                    Trend::Down
                        if hist < 0.0
                            && hist < hist_before
                            && (100.0 - c.rsi_ceiling..=100.0 - c.rsi_floor).contains(&rsi_now) =>
                    {
                        let momentum = unit((100.0 - c.rsi_floor - rsi_now) / band);
                        let confidence = 0.5 + 0.25 * trend.strength + 0.25 * momentum;
                        let (stop, take) = bracket(
                            NAME,
                            entry,
                            atr_now,
                            c.stop_loss_atr,
                            c.take_profit_atr,
                            false,
                        )?;
                        Signal::sell(
                            entry,
                            stop,
                            take,
                            confidence,
                            vec![
                                format!("downtrend: {trend_text}, close below the slow EMA"),
                                format!("{macd_text}: negative and falling"),
                                format!(
                                    "{rsi_text} within {}..={}",
                                    100.0 - c.rsi_ceiling,
                                    100.0 - c.rsi_floor
                                ),
                            ],
                        )
                        .map_err(&signal_err)
                    }
                    Trend::Up => hold(format!(
                        "uptrend ({trend_text}) but no entry: {macd_text}, {rsi_text}"
                    )),
                    Trend::Down => hold(format!(
                        "downtrend ({trend_text}) but no entry: {macd_text}, {rsi_text}"
                    )),
                    Trend::None => hold(format!("no trend: {trend_text}")),
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::bot::candles::aggregate;
    use crate::bot::signal::Action;
    use crate::bot::strategy::build;
    use crate::bot::strategy::test_support::{candles, position, real};
    use crate::domain::{Candle, Position};

    /// 60 hourly closes around 100, rising (`slope > 0`) or falling (`< 0`).
    fn trend(slope: f64) -> Vec<Candle> {
        let closes: Vec<f64> = (0..60)
            .map(|i| 100.0 + slope * f64::from(i) + if i % 2 == 0 { 0.0 } else { 0.05 })
            .collect();
        candles(Timeframe::H1, &closes)
    }

    /// 5m closes: a quiet range, a 10-candle dip, then a 6-candle recovery: MACD histogram
    /// turns positive and rising, RSI about 58. `mirror` reflects it (a bounce that fails).
    fn pullback(mirror: bool) -> Vec<Candle> {
        let mut closes: Vec<f64> = (0..40)
            .map(|i| if i % 2 == 0 { 100.0 } else { 100.2 })
            .collect();
        let mut x = 100.2;
        for _ in 0..10 {
            x -= 0.1;
            closes.push(x);
        }
        for _ in 0..6 {
            x += 0.15;
            closes.push(x);
        }
        if mirror {
            closes.iter_mut().for_each(|c| *c = 200.0 - *c);
        }
        candles(Timeframe::M5, &closes)
    }

    fn decide(trend: &[Candle], entry: &[Candle], position: Option<&Position>) -> Signal {
        let view =
            MarketView::new(&[(Timeframe::M5, entry), (Timeframe::H1, trend)], position).unwrap();
        build(NAME, &serde_json::Value::Null)
            .unwrap()
            .generate(&view)
            .unwrap()
    }

    #[test]
    fn buys_a_recovery_in_an_uptrend() {
        let s = decide(&trend(0.5), &pullback(false), None);
        assert_eq!(s.action(), Action::Buy, "{:?}", s.reasons());
        assert!(s.confidence() > 0.5 && s.confidence() <= 1.0);
        let (stop, take) = (s.stop_loss().unwrap(), s.take_profit().unwrap());
        assert!(stop < s.entry() && s.entry() < take);
        // 2 ATR stop, 3 ATR take-profit.
        let ratio = (take - s.entry()) / (s.entry() - stop);
        assert!(
            (ratio - Decimal::new(15, 1)).abs() < Decimal::new(1, 4),
            "{ratio}"
        );
    }

    #[test]
    fn sells_a_failed_bounce_in_a_downtrend() {
        let s = decide(&trend(-0.5), &pullback(true), None);
        assert_eq!(s.action(), Action::Sell, "{:?}", s.reasons());
        assert!(s.stop_loss().unwrap() > s.entry() && s.take_profit().unwrap() < s.entry());
    }

    #[test]
    fn holds_against_the_trend_and_without_one() {
        let s = decide(&trend(0.5), &pullback(true), None);
        assert_eq!(s.action(), Action::Hold, "{:?}", s.reasons());
        assert!(s.reasons()[0].starts_with("uptrend"), "{:?}", s.reasons());
        let flat = candles(Timeframe::H1, &[100.0; 60]);
        let s = decide(&flat, &pullback(false), None);
        assert_eq!(s.action(), Action::Hold);
        assert!(s.reasons()[0].starts_with("no trend"), "{:?}", s.reasons());
    }

    #[test]
    fn closes_positions_when_the_trend_turns() {
        let long = position(PositionSide::Long);
        let short = position(PositionSide::Short);
        let s = decide(&trend(-0.5), &pullback(false), Some(&long));
        assert_eq!((s.action(), s.confidence()), (Action::Close, 1.0));
        assert_eq!(
            decide(&trend(0.5), &pullback(false), Some(&long)).action(),
            Action::Hold
        );
        assert_eq!(
            decide(&trend(0.5), &pullback(true), Some(&short)).action(),
            Action::Close
        );
        assert_eq!(
            decide(&trend(-0.5), &pullback(true), Some(&short)).action(),
            Action::Hold
        );
    }

    #[test]
    fn needs_a_longer_trend_frame() {
        let entry = pullback(false);
        let only_entry = MarketView::new(&[(Timeframe::M5, &entry)], None).unwrap();
        let strategy = build(NAME, &serde_json::Value::Null).unwrap();
        assert!(matches!(
            strategy.generate(&only_entry),
            Err(StrategyError::MissingTimeframe { .. })
        ));
        let err = build(NAME, &serde_json::json!({"entry_timeframe": "4h"})).unwrap_err();
        assert!(matches!(
            err,
            StrategyError::InvalidParameter {
                field: "entry_timeframe",
                ..
            }
        ));
        assert_eq!(strategy.timeframes(), vec![Timeframe::H1]);
    }

    #[test]
    fn real_data_gives_valid_signals() {
        let five = real(Timeframe::M5);
        let strategy = build(NAME, &serde_json::Value::Null).unwrap();
        let mut seen = std::collections::HashSet::new();
        // Start once 50 complete hours exist; the hourly frame is rebuilt from the 5m prefix.
        for end in (50 * 12 + 12..=five.len()).step_by(6) {
            let prefix = &five[..end];
            let hours = aggregate(prefix, Timeframe::M5, Timeframe::H1).unwrap();
            let entry = &prefix[end - 200..];
            let view =
                MarketView::new(&[(Timeframe::M5, entry), (Timeframe::H1, &hours)], None).unwrap();
            let s = strategy.generate(&view).unwrap();
            assert!((0.0..=1.0).contains(&s.confidence()));
            if let (Some(stop), Some(take)) = (s.stop_loss(), s.take_profit()) {
                assert!((stop < s.entry()) == (s.entry() < take));
            }
            seen.insert(s.action());
        }
        assert!(seen.contains(&Action::Hold), "{seen:?}");
        assert!(
            seen.contains(&Action::Buy) || seen.contains(&Action::Sell),
            "{seen:?}"
        );
    }
}
