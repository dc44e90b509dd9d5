//! Technical indicators over closed candles, written to reproduce TA-Lib's output series.
//!
//! Every function returns a full [`Series`] aligned with its input (index `i` of the output
//! belongs to candle `i`); the first [`Series::lookback`] values are undefined, exactly where
//! TA-Lib returns NaN. Inputs shorter than the lookback give an all-undefined series, never a
//! panic. Values are `f64` (analysis values, like TA-Lib's); prices that leave the bot as orders
//! are `Decimal` and are produced by strategies, not here.
//!
//! Each indicator is one O(n) pass that allocates its output vectors and nothing else (the
//! stochastic's sliding extremes use two small deques). Deliberate differences from TA-Lib, both
//! only on perfectly flat input windows, are documented on [`rsi`] and [`stochastic`].

mod momentum;
mod moving_average;
mod snapshot;
mod volatility;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::domain::Candle;

pub use momentum::{Macd, Stochastic, macd, rsi, stochastic};
pub use moving_average::{ema, sma, volume_ratio};
pub(crate) use snapshot::snapshot_of;
pub use snapshot::{SNAPSHOT_MIN_CANDLES, Snapshot, snapshot};
pub use volatility::{Bollinger, atr, bollinger, true_range};

/// Longest period any indicator accepts (TA-Lib's limit too); keeps every index sum far from
/// overflow.
pub const MAX_PERIOD: usize = 100_000;

/// Why an indicator could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndicatorError {
    #[error("{indicator}: {parameter} must be between {min} and {MAX_PERIOD}, got {value}")]
    BadParameter {
        indicator: &'static str,
        parameter: &'static str,
        value: usize,
        min: usize,
    },
    #[error("{indicator}: input columns differ in length ({detail})")]
    LengthMismatch {
        indicator: &'static str,
        detail: String,
    },
    #[error("{what}: need at least {needed} closed candles, got {got}")]
    InsufficientData {
        what: &'static str,
        needed: usize,
        got: usize,
    },
    #[error(
        "candle {index} (open time {open_time}) is not closed; indicators use closed candles only"
    )]
    UnclosedCandle {
        index: usize,
        open_time: DateTime<Utc>,
    },
    #[error("candle {index} (open time {open_time}) does not come after the candle before it")]
    OutOfOrder {
        index: usize,
        open_time: DateTime<Utc>,
    },
    #[error("candle {index}: {field} {value} cannot be represented as a float")]
    NotRepresentable {
        index: usize,
        field: &'static str,
        value: Decimal,
    },
    #[error("{what} is undefined at the last candle (division by zero in the input)")]
    Undefined { what: &'static str },
}

/// One indicator output, aligned with its input. Undefined values (the lookback, or a division
/// by zero in the data) are stored as NaN and never handed out: [`Series::get`] and
/// [`Series::last`] return `None` for them.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    values: Vec<f64>,
    lookback: usize,
}

impl Series {
    fn new(values: Vec<f64>, lookback: usize) -> Self {
        let lookback = lookback.min(values.len());
        Self { values, lookback }
    }

    /// An all-undefined series of `len` values (input shorter than the lookback).
    fn undefined(len: usize) -> Self {
        Self {
            values: vec![f64::NAN; len],
            lookback: len,
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Index of the first defined value (equal to `len()` when there is none).
    pub fn lookback(&self) -> usize {
        self.lookback
    }

    /// The value at `index`, `None` inside the lookback, past the end, or where undefined.
    pub fn get(&self, index: usize) -> Option<f64> {
        self.values.get(index).copied().filter(|v| v.is_finite())
    }

    /// The value at the last input position, if defined.
    pub fn last(&self) -> Option<f64> {
        self.values.last().copied().filter(|v| v.is_finite())
    }

    /// The value `back` positions before the last one (`back = 0` is the last).
    pub fn from_end(&self, back: usize) -> Option<f64> {
        let index = self.values.len().checked_sub(back + 1)?;
        self.get(index)
    }

    /// Every position, `None` where undefined.
    pub fn iter(&self) -> impl Iterator<Item = Option<f64>> + '_ {
        self.values.iter().map(|v| v.is_finite().then_some(*v))
    }

    /// The raw values, NaN where undefined (TA-Lib's convention).
    pub fn raw(&self) -> &[f64] {
        &self.values
    }
}

/// Candles split into float columns, the input shape the indicators take.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ohlcv {
    pub open: Vec<f64>,
    pub high: Vec<f64>,
    pub low: Vec<f64>,
    pub close: Vec<f64>,
    pub volume: Vec<f64>,
}

impl Ohlcv {
    /// Columns of `candles`, which must all be closed and in strictly increasing time order.
    pub fn from_candles(candles: &[Candle]) -> Result<Self, IndicatorError> {
        let n = candles.len();
        let mut cols = Ohlcv {
            open: Vec::with_capacity(n),
            high: Vec::with_capacity(n),
            low: Vec::with_capacity(n),
            close: Vec::with_capacity(n),
            volume: Vec::with_capacity(n),
        };
        let mut previous: Option<DateTime<Utc>> = None;
        for (index, candle) in candles.iter().enumerate() {
            if !candle.closed {
                return Err(IndicatorError::UnclosedCandle {
                    index,
                    open_time: candle.open_time,
                });
            }
            if previous.is_some_and(|p| p >= candle.open_time) {
                return Err(IndicatorError::OutOfOrder {
                    index,
                    open_time: candle.open_time,
                });
            }
            previous = Some(candle.open_time);
            let float = |field: &'static str, value: Decimal| {
                to_f64(value)
                    .filter(|v| v.is_finite())
                    .ok_or(IndicatorError::NotRepresentable {
                        index,
                        field,
                        value,
                    })
            };
            cols.open.push(float("open", candle.open)?);
            cols.high.push(float("high", candle.high)?);
            cols.low.push(float("low", candle.low)?);
            cols.close.push(float("close", candle.close)?);
            cols.volume.push(float("volume", candle.volume)?);
        }
        Ok(cols)
    }

    pub fn len(&self) -> usize {
        self.close.len()
    }

    pub fn is_empty(&self) -> bool {
        self.close.is_empty()
    }
}

/// `value` as the nearest-or-next `f64`: the mantissa (exact up to 2^53, correctly rounded
/// beyond) divided by an exact power of ten, within one ulp of the true value, several times
/// faster than the general conversion, which remains the fallback for scales above 22.
fn to_f64(value: Decimal) -> Option<f64> {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    match POW10.get(value.scale() as usize) {
        Some(divisor) => Some(value.mantissa() as f64 / divisor),
        None => value.to_f64(),
    }
}

/// The leading closed candles of `candles`: drops a trailing candle that is still forming.
pub fn closed_prefix(candles: &[Candle]) -> &[Candle] {
    match candles.split_last() {
        Some((last, rest)) if !last.closed => rest,
        _ => candles,
    }
}

fn check_period(
    indicator: &'static str,
    parameter: &'static str,
    value: usize,
    min: usize,
) -> Result<(), IndicatorError> {
    if value < min || value > MAX_PERIOD {
        return Err(IndicatorError::BadParameter {
            indicator,
            parameter,
            value,
            min,
        });
    }
    Ok(())
}

fn check_lengths(indicator: &'static str, columns: &[&[f64]]) -> Result<usize, IndicatorError> {
    let n = columns.first().map_or(0, |c| c.len());
    if columns.iter().any(|c| c.len() != n) {
        let lengths: Vec<String> = columns.iter().map(|c| c.len().to_string()).collect();
        return Err(IndicatorError::LengthMismatch {
            indicator,
            detail: lengths.join(" vs "),
        });
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_conversion_is_within_an_ulp() {
        for text in [
            "1.1941",
            "0.00000123",
            "65432.1",
            "-3.5",
            "0",
            "123456789.123456789",
        ] {
            let d: Decimal = text.parse().unwrap_or_default();
            let want: f64 = text.parse().unwrap_or_default();
            let got = to_f64(d).unwrap_or(f64::NAN);
            assert!(
                (got - want).abs() <= want.abs() * f64::EPSILON,
                "{text}: {got}"
            );
        }
        let tiny = Decimal::from_i128_with_scale(5, 28);
        assert!((to_f64(tiny).unwrap_or(0.0) - 5e-28).abs() < 1e-40);
    }
}
