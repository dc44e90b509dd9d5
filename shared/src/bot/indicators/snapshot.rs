//! The per-timeframe analysis snapshot: every standard indicator at the last closed candle,
//! recorded with each cycle and printed by `fleetctl analyze`.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{
    IndicatorError, Ohlcv, Series, atr, bollinger, closed_prefix, ema, macd, rsi, sma, stochastic,
    volume_ratio,
};
use crate::domain::{Candle, Timeframe};

/// Fewest closed candles a snapshot needs: MACD 12/26/9 has the longest lookback (33).
pub const SNAPSHOT_MIN_CANDLES: usize = 34;

/// Standard indicators (TA-Lib default parameters) at the last closed candle of one timeframe.
/// Every value is finite; `volume_ratio` is `None` when the 20-candle average volume is zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub timeframe: Timeframe,
    /// Open time of the candle the values belong to.
    pub time: DateTime<Utc>,
    pub close: Decimal,
    pub rsi_14: f64,
    pub sma_20: f64,
    pub ema_12: f64,
    pub ema_26: f64,
    pub macd: f64,
    pub macd_signal: f64,
    pub macd_hist: f64,
    pub bb_upper: f64,
    pub bb_middle: f64,
    pub bb_lower: f64,
    pub atr_14: f64,
    pub stoch_k: f64,
    pub stoch_d: f64,
    pub volume_ratio: Option<f64>,
}

/// The snapshot of the last closed candle of `candles` (oldest first; a trailing candle still
/// forming is ignored, every other must be closed; at least [`SNAPSHOT_MIN_CANDLES`] closed).
pub fn snapshot(timeframe: Timeframe, candles: &[Candle]) -> Result<Snapshot, IndicatorError> {
    let candles = closed_prefix(candles);
    let last = match candles.last() {
        Some(last) if candles.len() >= SNAPSHOT_MIN_CANDLES => last,
        _ => {
            return Err(IndicatorError::InsufficientData {
                what: "analysis snapshot",
                needed: SNAPSHOT_MIN_CANDLES,
                got: candles.len(),
            });
        }
    };
    let cols = Ohlcv::from_candles(candles)?;
    snapshot_of(timeframe, last, &cols)
}

/// The snapshot of `last`, the candle at the end of `cols` (already validated columns).
pub(crate) fn snapshot_of(
    timeframe: Timeframe,
    last: &Candle,
    cols: &Ohlcv,
) -> Result<Snapshot, IndicatorError> {
    if cols.len() < SNAPSHOT_MIN_CANDLES {
        return Err(IndicatorError::InsufficientData {
            what: "analysis snapshot",
            needed: SNAPSHOT_MIN_CANDLES,
            got: cols.len(),
        });
    }
    let close = &cols.close;
    let at_end = |what: &'static str, series: &Series| {
        series.last().ok_or(IndicatorError::Undefined { what })
    };
    let m = macd(close, 12, 26, 9)?;
    let bands = bollinger(close, 20, 2.0)?;
    let stoch = stochastic(&cols.high, &cols.low, close, 14, 3, 3)?;
    Ok(Snapshot {
        timeframe,
        time: last.open_time,
        close: last.close,
        rsi_14: at_end("rsi_14", &rsi(close, 14)?)?,
        sma_20: at_end("sma_20", &sma(close, 20)?)?,
        ema_12: at_end("ema_12", &ema(close, 12)?)?,
        ema_26: at_end("ema_26", &ema(close, 26)?)?,
        macd: at_end("macd", &m.macd)?,
        macd_signal: at_end("macd_signal", &m.signal)?,
        macd_hist: at_end("macd_hist", &m.hist)?,
        bb_upper: at_end("bb_upper", &bands.upper)?,
        bb_middle: at_end("bb_middle", &bands.middle)?,
        bb_lower: at_end("bb_lower", &bands.lower)?,
        atr_14: at_end("atr_14", &atr(&cols.high, &cols.low, close, 14)?)?,
        stoch_k: at_end("stoch_k", &stoch.k)?,
        stoch_d: at_end("stoch_d", &stoch.d)?,
        volume_ratio: volume_ratio(&cols.volume, 20)?.last(),
    })
}
