//! Trading strategies behind one trait, chosen by name from a registry with typed, validated
//! configuration, and the market view they decide on.
//!
//! A strategy sees closed candles and their analysis snapshots for 1..=7 timeframes plus the
//! open position, and returns one [`Signal`]. Configuration is parsed up front (serde with
//! `deny_unknown_fields`, every field defaulted) and validated before the first cycle, so a bad
//! subscription fails at start-up with the field that is wrong.

mod mtf_trend;
mod rsi_bollinger;

use std::fmt;

use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;
use serde::de::DeserializeOwned;

use super::indicators::{IndicatorError, MAX_PERIOD, Ohlcv, Snapshot, closed_prefix, snapshot_of};
use super::signal::{Signal, SignalError};
use crate::domain::{Candle, Position, Timeframe};

pub use mtf_trend::{MtfTrend, MtfTrendConfig};
pub use rsi_bollinger::{RsiBollinger, RsiBollingerConfig};

/// Names the registry knows, sorted.
pub const STRATEGY_NAMES: [&str; 2] = [mtf_trend::NAME, rsi_bollinger::NAME];

/// Why a strategy could not be built or could not decide.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StrategyError {
    #[error("unknown strategy {name:?} (known: {})", STRATEGY_NAMES.join(", "))]
    UnknownStrategy { name: String },
    #[error("invalid config for strategy {strategy}: {}{message}", field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
    Config {
        strategy: &'static str,
        field: Option<String>,
        message: String,
    },
    #[error("invalid config for strategy {strategy}: field `{field}`: {reason}")]
    InvalidParameter {
        strategy: &'static str,
        field: &'static str,
        reason: String,
    },
    #[error("market view: {0}")]
    View(String),
    #[error("{strategy}: the market view has no {timeframe} candles")]
    MissingTimeframe {
        strategy: &'static str,
        timeframe: String,
    },
    #[error("{timeframe} indicators: {source}")]
    Indicator {
        timeframe: Timeframe,
        source: IndicatorError,
    },
    #[error("{strategy} produced an invalid signal: {source}")]
    Signal {
        strategy: &'static str,
        source: SignalError,
    },
    #[error("{strategy}: {what} {value} cannot be expressed as a price")]
    Price {
        strategy: &'static str,
        what: &'static str,
        value: f64,
    },
}

/// A trading strategy: validated configuration in, one signal per cycle out.
pub trait Strategy: Send + Sync + fmt::Debug {
    /// The registry name (`rsi_bollinger`, ...).
    fn name(&self) -> &'static str;
    /// Checks the configuration; the registry calls it before handing the strategy out.
    fn validate(&self) -> Result<(), StrategyError>;
    /// Timeframes the strategy needs in its view besides the subscription's own.
    fn timeframes(&self) -> Vec<Timeframe> {
        Vec::new()
    }
    /// The decision for the last closed candle of `view`.
    fn generate(&self, view: &MarketView<'_>) -> Result<Signal, StrategyError>;
}

/// The strategy registered as `name`, configured from `config` (a JSON object; `null` means
/// all defaults) and validated.
pub fn build(name: &str, config: &serde_json::Value) -> Result<Box<dyn Strategy>, StrategyError> {
    let strategy: Box<dyn Strategy> = match name {
        rsi_bollinger::NAME => Box::new(RsiBollinger::new(parse_config(
            rsi_bollinger::NAME,
            config,
        )?)),
        mtf_trend::NAME => Box::new(MtfTrend::new(parse_config(mtf_trend::NAME, config)?)),
        _ => {
            return Err(StrategyError::UnknownStrategy {
                name: name.to_string(),
            });
        }
    };
    strategy.validate()?;
    Ok(strategy)
}

/// Parses a strategy config. On failure the error names the offending field: serde names
/// unknown fields itself; for a value of the wrong type each given field is tried alone (all
/// config fields have defaults) to find the one that does not parse.
fn parse_config<T: DeserializeOwned>(
    strategy: &'static str,
    config: &serde_json::Value,
) -> Result<T, StrategyError> {
    let config = match config {
        serde_json::Value::Null => &serde_json::Value::Object(serde_json::Map::new()),
        other => other,
    };
    let Some(fields) = config.as_object() else {
        return Err(StrategyError::Config {
            strategy,
            field: None,
            message: format!("expected a JSON object, got {config}"),
        });
    };
    serde_json::from_value::<T>(config.clone()).map_err(|error| {
        let field = fields
            .iter()
            .find(|(key, value)| {
                let mut alone = serde_json::Map::new();
                alone.insert((*key).clone(), (*value).clone());
                serde_json::from_value::<T>(serde_json::Value::Object(alone)).is_err()
            })
            .map(|(key, _)| key.clone());
        StrategyError::Config {
            strategy,
            field,
            message: error.to_string(),
        }
    })
}

/// Closed candles of one timeframe with their columns and snapshot.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    timeframe: Timeframe,
    candles: &'a [Candle],
    columns: Ohlcv,
    snapshot: Snapshot,
}

impl<'a> Frame<'a> {
    pub fn timeframe(&self) -> Timeframe {
        self.timeframe
    }
    /// Closed candles, oldest first.
    pub fn candles(&self) -> &'a [Candle] {
        self.candles
    }
    /// The candles as float columns (indicator input).
    pub fn columns(&self) -> &Ohlcv {
        &self.columns
    }
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }
    /// The last closed candle.
    pub fn last(&self) -> Option<&'a Candle> {
        self.candles.last()
    }
}

/// What a strategy decides on: 1..=7 timeframes of closed candles (shortest first), each with
/// its snapshot, and the open position if any.
#[derive(Debug, Clone)]
pub struct MarketView<'a> {
    frames: Vec<Frame<'a>>,
    position: Option<&'a Position>,
}

impl<'a> MarketView<'a> {
    pub const MAX_TIMEFRAMES: usize = 7;

    /// Builds the view and computes each timeframe's snapshot. A trailing candle still forming
    /// is dropped; every other candle must be closed and in time order, and each timeframe needs
    /// at least [`SNAPSHOT_MIN_CANDLES`](super::indicators::SNAPSHOT_MIN_CANDLES) closed candles.
    pub fn new(
        series: &[(Timeframe, &'a [Candle])],
        position: Option<&'a Position>,
    ) -> Result<Self, StrategyError> {
        if series.is_empty() || series.len() > Self::MAX_TIMEFRAMES {
            return Err(StrategyError::View(format!(
                "needs 1 to {} timeframes, got {}",
                Self::MAX_TIMEFRAMES,
                series.len()
            )));
        }
        let mut frames: Vec<Frame<'a>> = Vec::with_capacity(series.len());
        for &(timeframe, candles) in series {
            if frames.iter().any(|f| f.timeframe == timeframe) {
                return Err(StrategyError::View(format!(
                    "timeframe {timeframe} is given twice"
                )));
            }
            let candles = closed_prefix(candles);
            let indicator = |source| StrategyError::Indicator { timeframe, source };
            let columns = Ohlcv::from_candles(candles).map_err(indicator)?;
            let last = candles.last().ok_or_else(|| {
                indicator(IndicatorError::InsufficientData {
                    what: "analysis snapshot",
                    needed: super::indicators::SNAPSHOT_MIN_CANDLES,
                    got: 0,
                })
            })?;
            let snapshot = snapshot_of(timeframe, last, &columns).map_err(indicator)?;
            frames.push(Frame {
                timeframe,
                candles,
                columns,
                snapshot,
            });
        }
        frames.sort_by_key(|f| f.timeframe);
        Ok(Self { frames, position })
    }

    /// All frames, shortest timeframe first.
    pub fn frames(&self) -> &[Frame<'a>] {
        &self.frames
    }
    pub fn frame(&self, timeframe: Timeframe) -> Option<&Frame<'a>> {
        self.frames.iter().find(|f| f.timeframe == timeframe)
    }
    /// The shortest timeframe (the subscription's trading frame unless a strategy says other).
    pub fn shortest(&self) -> Option<&Frame<'a>> {
        self.frames.first()
    }
    pub fn position(&self) -> Option<&'a Position> {
        self.position
    }
    /// Every frame's snapshot, shortest timeframe first (what a cycle records).
    pub fn snapshots(&self) -> Vec<&Snapshot> {
        self.frames.iter().map(|f| &f.snapshot).collect()
    }
}

/// The frame a strategy trades on: `wanted` if configured, else the shortest.
fn pick_frame<'v, 'a>(
    strategy: &'static str,
    view: &'v MarketView<'a>,
    wanted: Option<Timeframe>,
) -> Result<&'v Frame<'a>, StrategyError> {
    match wanted {
        Some(tf) => view.frame(tf),
        None => view.shortest(),
    }
    .ok_or_else(|| StrategyError::MissingTimeframe {
        strategy,
        timeframe: wanted.map_or_else(|| "any".to_string(), |tf| tf.to_string()),
    })
}

/// The last value of an indicator, or an error saying how many candles it needs.
fn last_value(
    frame: &Frame<'_>,
    what: &'static str,
    needed: usize,
    value: Option<f64>,
) -> Result<f64, StrategyError> {
    value.ok_or(StrategyError::Indicator {
        timeframe: frame.timeframe,
        source: IndicatorError::InsufficientData {
            what,
            needed,
            got: frame.candles.len(),
        },
    })
}

fn indicator_error(frame: &Frame<'_>) -> impl Fn(IndicatorError) -> StrategyError {
    let timeframe = frame.timeframe;
    move |source| StrategyError::Indicator { timeframe, source }
}

/// Stop-loss and take-profit `atr * multiple` away from `entry` (below/above for a long,
/// above/below for a short), rounded to two decimals finer than the entry (at least 6). The
/// order code puts them on the venue's tick grid.
fn bracket(
    strategy: &'static str,
    entry: Decimal,
    atr: f64,
    stop_multiple: Decimal,
    take_profit_multiple: Decimal,
    long: bool,
) -> Result<(Decimal, Decimal), StrategyError> {
    let atr = Decimal::from_f64(atr)
        .filter(|a| *a > Decimal::ZERO)
        .ok_or(StrategyError::Price {
            strategy,
            what: "ATR",
            value: atr,
        })?;
    let dp = (entry.scale().max(4) + 2).min(16);
    let overflow = StrategyError::Price {
        strategy,
        what: "ATR multiple",
        value: f64::INFINITY,
    };
    let stop_distance = atr.checked_mul(stop_multiple).ok_or(overflow.clone())?;
    let take_distance = atr.checked_mul(take_profit_multiple).ok_or(overflow)?;
    let (stop, take) = if long {
        (entry - stop_distance, entry + take_distance)
    } else {
        (entry + stop_distance, entry - take_distance)
    };
    Ok((stop.round_dp(dp), take.round_dp(dp)))
}

fn signal_error(strategy: &'static str) -> impl Fn(SignalError) -> StrategyError {
    move |source| StrategyError::Signal { strategy, source }
}

/// `x` limited to 0..=1 (NaN counts as 0).
fn unit(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

/// A period field: `min..=MAX_PERIOD`.
fn period(
    strategy: &'static str,
    field: &'static str,
    value: usize,
    min: usize,
) -> Result<(), StrategyError> {
    require(strategy, field, (min..=MAX_PERIOD).contains(&value), || {
        format!("must be between {min} and {MAX_PERIOD}, got {value}")
    })
}

/// A multiple of ATR for a stop or target: above 0, at most 100.
fn atr_multiple(
    strategy: &'static str,
    field: &'static str,
    value: Decimal,
) -> Result<(), StrategyError> {
    require(
        strategy,
        field,
        value > Decimal::ZERO && value <= Decimal::ONE_HUNDRED,
        || format!("must be above 0 and at most 100, got {value}"),
    )
}

/// Config checks shared by the strategies.
fn require(
    strategy: &'static str,
    field: &'static str,
    ok: bool,
    reason: impl FnOnce() -> String,
) -> Result<(), StrategyError> {
    if ok {
        Ok(())
    } else {
        Err(StrategyError::InvalidParameter {
            strategy,
            field,
            reason: reason(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod test_support {
    //! Candle series built by hand for the strategy tests.

    use chrono::{DateTime, Utc};
    use rust_decimal::Decimal;
    use rust_decimal::prelude::FromPrimitive;

    use crate::domain::{Candle, Position, PositionSide, Timeframe};

    /// Closed candles of `timeframe` whose closes are `closes`; each candle opens at the previous
    /// close and spans 0.2% around its body.
    pub fn candles(timeframe: Timeframe, closes: &[f64]) -> Vec<Candle> {
        let mut previous = closes.first().copied().unwrap_or(1.0);
        closes
            .iter()
            .enumerate()
            .map(|(i, &close)| {
                let open = previous;
                previous = close;
                let d = |x: f64| Decimal::from_f64(x).unwrap().round_dp(6);
                Candle {
                    open_time: DateTime::<Utc>::from_timestamp(
                        1_700_000_000 / 3600 * 3600 + i as i64 * timeframe.seconds(),
                        0,
                    )
                    .unwrap(),
                    open: d(open),
                    high: d(open.max(close) * 1.001),
                    low: d(open.min(close) * 0.999),
                    close: d(close),
                    volume: Decimal::from(1000 + (i % 7) as i64 * 100),
                    closed: true,
                }
            })
            .collect()
    }

    pub fn position(side: PositionSide) -> Position {
        Position {
            symbol: "XRP/USDT:USDT".parse().unwrap(),
            side,
            quantity: Decimal::from(100),
            entry_price: Decimal::ONE,
            mark_price: None,
            unrealized_pnl: Decimal::ZERO,
            leverage: None,
            liquidation_price: None,
        }
    }

    /// The bundled real 5m and 1h XRP/USDT candles.
    pub fn real(timeframe: Timeframe) -> Vec<Candle> {
        let text = match timeframe {
            Timeframe::H1 => include_str!("../../../data/market/XRPUSDT-PERP-1h.csv"),
            _ => include_str!("../../../data/market/XRPUSDT-PERP-5m.csv"),
        };
        crate::bot::candles::read_csv(text.as_bytes(), Utc::now())
            .unwrap()
            .candles
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::test_support::candles;
    use super::*;

    #[test]
    fn registry_builds_known_strategies_with_defaults() {
        for name in STRATEGY_NAMES {
            let s = build(name, &serde_json::Value::Null).unwrap();
            assert_eq!(s.name(), name);
        }
        let err = build("martingale", &serde_json::Value::Null).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown strategy \"martingale\" (known: mtf_trend, rsi_bollinger)"
        );
    }

    #[test]
    fn bad_config_names_the_field() {
        let unknown = build("rsi_bollinger", &serde_json::json!({"oversould": 25})).unwrap_err();
        assert!(unknown.to_string().contains("oversould"), "{unknown}");
        let typed = build(
            "rsi_bollinger",
            &serde_json::json!({"oversold": 25, "rsi_period": "fourteen"}),
        )
        .unwrap_err();
        assert!(
            matches!(&typed, StrategyError::Config { field: Some(f), .. } if f == "rsi_period"),
            "{typed}"
        );
        let range = build("rsi_bollinger", &serde_json::json!({"oversold": 80})).unwrap_err();
        assert!(
            matches!(
                range,
                StrategyError::InvalidParameter {
                    field: "oversold",
                    ..
                }
            ),
            "{range}"
        );
        let huge = build("mtf_trend", &serde_json::json!({"slow_ema": 1_000_000})).unwrap_err();
        assert_eq!(
            huge.to_string(),
            "invalid config for strategy mtf_trend: field `slow_ema`: must be between 3 and 100000, got 1000000"
        );
        let stop = build("rsi_bollinger", &serde_json::json!({"stop_loss_atr": 0})).unwrap_err();
        assert!(matches!(
            stop,
            StrategyError::InvalidParameter {
                field: "stop_loss_atr",
                ..
            }
        ));
        let not_object = build("mtf_trend", &serde_json::json!([1])).unwrap_err();
        assert!(matches!(
            not_object,
            StrategyError::Config { field: None, .. }
        ));
    }

    #[test]
    fn view_checks_its_frames() {
        let short = candles(Timeframe::M5, &[1.0; 20]);
        let long = candles(Timeframe::M5, &[1.0; 40]);
        assert!(matches!(
            MarketView::new(&[], None),
            Err(StrategyError::View(_))
        ));
        assert!(matches!(
            MarketView::new(&[(Timeframe::M5, &long), (Timeframe::M5, &long)], None),
            Err(StrategyError::View(_))
        ));
        let err = MarketView::new(&[(Timeframe::M5, &short)], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "5m indicators: analysis snapshot: need at least 34 closed candles, got 20"
        );
        let mut forming = long.clone();
        if let Some(last) = forming.last_mut() {
            last.closed = false;
        }
        let view = MarketView::new(&[(Timeframe::M5, &forming)], None).unwrap();
        assert_eq!(view.shortest().unwrap().candles().len(), 39);
    }
}
